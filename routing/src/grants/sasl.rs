//! The SASL exchange of SMTP AUTH (RFC 4954) for PLAIN (RFC 4616) and
//! LOGIN, as a pure state machine: the session feeds it the AUTH
//! arguments and each client line, and writes what it answers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// What the client said it is: never printed with the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
}

/// A malformed or cancelled exchange, with the reply RFC 4954 gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    UnknownMechanism,
    Syntax,
    BadBase64,
    Malformed,
    Cancelled,
}

impl SaslError {
    pub fn code(self) -> u16 {
        match self {
            SaslError::UnknownMechanism => 504,
            _ => 501,
        }
    }

    pub fn enhanced(self) -> &'static str {
        match self {
            SaslError::UnknownMechanism => "5.5.4",
            SaslError::Cancelled => "5.0.0",
            _ => "5.5.2",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            SaslError::UnknownMechanism => {
                "Unrecognized authentication type (PLAIN and LOGIN are offered)"
            }
            SaslError::Syntax => "Syntax: AUTH mechanism [initial-response]",
            SaslError::BadBase64 => "Cannot decode response: not base64",
            SaslError::Malformed => "Malformed authentication response",
            SaslError::Cancelled => "Authentication cancelled",
        }
    }
}

/// The next thing to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `334 <base64 challenge>`, then feed the client's next line.
    Challenge(&'static str),
    /// The exchange is complete: check these credentials.
    Done(Credentials),
    Failed(SaslError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    PlainResponse,
    LoginUser,
    LoginPassword(String),
}

/// An exchange in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    state: State,
}

/// `Username:` and `Password:`, as every LOGIN client expects them.
const LOGIN_USER: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

impl Exchange {
    /// Starts an exchange from the AUTH command's arguments
    /// (`mechanism [initial-response]`). With a `Challenge`, the exchange
    /// to feed the client's next line to.
    pub fn start(args: &str) -> (Step, Option<Exchange>) {
        let mut words = args.split_ascii_whitespace();
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            return (Step::Failed(SaslError::Syntax), None);
        };
        let state = if mechanism.eq_ignore_ascii_case("PLAIN") {
            State::PlainResponse
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            State::LoginUser
        } else {
            return (Step::Failed(SaslError::UnknownMechanism), None);
        };
        let mut exchange = Exchange { state };
        match initial {
            // RFC 4954 §4: "=" is an initial response of zero length.
            Some(initial) => {
                let step = exchange.feed(initial, true);
                let more = matches!(step, Step::Challenge(_));
                (step, more.then_some(exchange))
            }
            None => {
                let challenge = match exchange.state {
                    State::PlainResponse => "",
                    _ => LOGIN_USER,
                };
                (Step::Challenge(challenge), Some(exchange))
            }
        }
    }

    /// The client's answer to the last challenge (the line without CRLF).
    pub fn respond(&mut self, line: &str) -> Step {
        self.feed(line, false)
    }

    fn feed(&mut self, line: &str, initial: bool) -> Step {
        if line == "*" {
            return Step::Failed(SaslError::Cancelled);
        }
        let decoded = if initial && line == "=" {
            Vec::new()
        } else {
            match STANDARD.decode(line.trim_end()) {
                Ok(d) => d,
                Err(_) => return Step::Failed(SaslError::BadBase64),
            }
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return Step::Failed(SaslError::Malformed);
        };
        match std::mem::replace(&mut self.state, State::LoginUser) {
            State::PlainResponse => plain(&text),
            State::LoginUser => {
                if text.is_empty() || text.contains('\0') {
                    return Step::Failed(SaslError::Malformed);
                }
                self.state = State::LoginPassword(text);
                Step::Challenge(LOGIN_PASSWORD)
            }
            State::LoginPassword(user) => {
                if text.contains('\0') {
                    return Step::Failed(SaslError::Malformed);
                }
                Step::Done(Credentials {
                    user,
                    password: text,
                })
            }
        }
    }
}

/// `[authzid] NUL authcid NUL passwd`; acting for somebody else
/// (an authzid other than the authcid) is not supported.
fn plain(text: &str) -> Step {
    let mut parts = text.split('\0');
    let (Some(authz), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Failed(SaslError::Malformed);
    };
    if user.is_empty() || !(authz.is_empty() || authz == user) {
        return Step::Failed(SaslError::Malformed);
    }
    Step::Done(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn done(user: &str, password: &str) -> Step {
        Step::Done(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (step, ex) = Exchange::start(&format!("PLAIN {}", b64("\0alice\0pw")));
        assert_eq!((step, ex), (done("alice", "pw"), None));
        let (step, ex) = Exchange::start(&format!("plain {}", b64("alice\0alice\0pw")));
        assert_eq!((step, ex), (done("alice", "pw"), None));
        let (step, ex) = Exchange::start("PLAIN");
        assert_eq!(step, Step::Challenge(""));
        assert_eq!(ex.unwrap().respond(&b64("\0bob\0x y")), done("bob", "x y"));
    }

    #[test]
    fn login_asks_user_then_password() {
        let (step, ex) = Exchange::start("LOGIN");
        assert_eq!(step, Step::Challenge(LOGIN_USER));
        let mut ex = ex.unwrap();
        assert_eq!(ex.respond(&b64("alice")), Step::Challenge(LOGIN_PASSWORD));
        assert_eq!(ex.respond(&b64("pw")), done("alice", "pw"));
        let (step, ex) = Exchange::start(&format!("LOGIN {}", b64("alice")));
        assert_eq!(step, Step::Challenge(LOGIN_PASSWORD));
        assert_eq!(ex.unwrap().respond(&b64("")), done("alice", ""));
    }

    #[test]
    fn malformed_exchanges_get_the_rfc_errors() {
        let failed = |args: &str| Exchange::start(args).0;
        assert_eq!(failed(""), Step::Failed(SaslError::Syntax));
        assert_eq!(failed("PLAIN a b"), Step::Failed(SaslError::Syntax));
        assert_eq!(
            failed("CRAM-MD5"),
            Step::Failed(SaslError::UnknownMechanism)
        );
        assert_eq!(failed("PLAIN !!!"), Step::Failed(SaslError::BadBase64));
        assert_eq!(failed("PLAIN ="), Step::Failed(SaslError::Malformed));
        assert_eq!(failed("LOGIN ="), Step::Failed(SaslError::Malformed));
        assert_eq!(failed("PLAIN *"), Step::Failed(SaslError::Cancelled));
        assert_eq!(
            failed(&format!("PLAIN {}", b64("bob\0alice\0pw"))),
            Step::Failed(SaslError::Malformed)
        );
        assert_eq!(
            failed(&format!("PLAIN {}", b64("\0alice\0pw\0more"))),
            Step::Failed(SaslError::Malformed)
        );
        assert_eq!(
            failed(&format!("PLAIN {}", STANDARD.encode([0, b'a', 0, 0xff]))),
            Step::Failed(SaslError::Malformed)
        );
        let (_, ex) = Exchange::start("LOGIN");
        assert_eq!(ex.unwrap().respond("*"), Step::Failed(SaslError::Cancelled));
    }

    #[test]
    fn the_password_is_never_printed() {
        let c = Credentials {
            user: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
