//! Real MTAs as test peers, each a private instance in a temporary
//! directory on loopback: Postfix (Debian's package; needs root to start its
//! master) and Exim (Debian's exim4 binary, run with `-C` as root). Nothing
//! of the machine's own mail system is used or changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A private Postfix: its own queue, configuration and log under `dir`,
/// its SMTP server on 127.0.0.1:`port`.
pub struct Postfix {
    pub dir: PathBuf,
    pub port: u16,
}

/// The services of a Postfix master.cf besides the SMTP server and the
/// smtp/relay transports.
const SERVICES: &str = "pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
";

/// The standard smtp and relay transports (Postfix's SMTP client).
pub const SMTP_CLIENT: &str = "smtp unix - - n - - smtp\nrelay unix - - n - - smtp\n";

impl Postfix {
    /// Its configuration: `main` added to the harness's main.cf (a private
    /// queue, a log file, loopback only, no local domains), `transports` as
    /// the master.cf lines of the smtp and relay transports. Tables go in
    /// with [`Postfix::map`], then [`Postfix::start`].
    pub fn configure(dir: &Path, port: u16, main: &str, transports: &str) -> Postfix {
        let conf = dir.join("conf");
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        run("chown", &["postfix", dir.join("data").to_str().unwrap()]);
        run("chmod", &["755", dir.to_str().unwrap()]);
        let d = dir.display();
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 mydestination =\n\
                 queue_directory = {d}/queue\n\
                 data_directory = {d}/data\n\
                 maillog_file_prefixes = {d}\n\
                 maillog_file = {d}/maillog\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 {main}"
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{SERVICES}{transports}"),
        )
        .unwrap();
        Postfix {
            dir: dir.to_owned(),
            port,
        }
    }

    pub fn start(&self) {
        run("postfix", &["-c", self.conf().to_str().unwrap(), "start"]);
        wait_listening(self.port, "Postfix");
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// A lookup table in the configuration directory, postmap'ed.
    pub fn map(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.conf().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        run(
            "postmap",
            &["-c", self.conf().to_str().unwrap(), path.to_str().unwrap()],
        );
        path
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Messages in the queue (incoming, active, deferred, maildrop).
    pub fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "maildrop"]
            .iter()
            .map(|q| files(&self.dir.join("queue").join(q)))
            .sum()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .args(["-c", self.conf().to_str().unwrap(), "stop"])
            .output();
    }
}

/// A private Exim: a configuration of the harness's (a spool, logs, its
/// binary's path for re-execs) plus `routing` (its routers, transports and
/// retry sections), run as root with `-C`.
#[derive(Clone)]
pub struct Exim {
    pub dir: PathBuf,
    binary: PathBuf,
}

impl Exim {
    pub fn new(binary: &Path, dir: &Path, routing: &str) -> Exim {
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Exim drops to its own user for deliveries and logging.
        run("chmod", &["755", dir.to_str().unwrap()]);
        run("chmod", &["777", dir.join("log").to_str().unwrap()]);
        run(
            "chown",
            &["Debian-exim", dir.join("spool").to_str().unwrap()],
        );
        let d = dir.display();
        let config = dir.join("exim.conf");
        std::fs::write(
            &config,
            format!(
                "exim_path = {binary}\n\
                 primary_hostname = exim.test\n\
                 spool_directory = {d}/spool\n\
                 log_file_path = {d}/log/%slog\n\
                 log_selector = +smtp_confirmation +received_recipients\n\
                 keep_environment =\n\
                 daemon_smtp_ports =\n\
                 domainlist local_domains =\n\
                 {routing}",
                binary = binary.display()
            ),
        )
        .unwrap();
        run("chmod", &["644", config.to_str().unwrap()]);
        Exim {
            dir: dir.to_owned(),
            binary: binary.to_owned(),
        }
    }

    /// Takes a message from `from` to `to` on standard input and delivers
    /// it at once, in the foreground (`-odf`).
    pub fn send(&self, from: &str, to: &[&str], message: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.binary)
            .arg("-C")
            .arg(self.dir.join("exim.conf"))
            .args(["-odf", "-oi", "-f", from])
            .args(to)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("exim runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/mainlog")).unwrap_or_default()
    }
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
