//! The commands: read manifests, call the routing core, print.

use crate::{Format, Input};
use anyhow::{Context, Result};
use manifests::display_ns;
use routing::table::{MANIFEST_KEY, encode};
use routing::{CompileOptions, Compiled, Decision, ObjectReport};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Reads the manifests; every problem is printed, one a line, before the
/// command gives up (exit 2).
fn read(input: &Input) -> Result<manifests::Manifests> {
    let m = manifests::read(&input.files).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        anyhow::anyhow!("{} problem(s) in the manifests", errors.0.len())
    })?;
    // Other kinds beside mailroute's are normal in a manifests directory
    // (Namespaces, Deployments): listed only when asked for.
    if input.verbose && !m.skipped.is_empty() {
        eprintln!(
            "info: {} object(s) of other kinds left aside: {}",
            m.skipped.len(),
            m.skipped.join(", ")
        );
    }
    Ok(m)
}

fn options(input: &Input) -> CompileOptions {
    CompileOptions {
        self_addresses: input.self_addresses.clone(),
    }
}

fn compile_one(input: &Input) -> Result<(String, Compiled)> {
    let (ns, objects) = read(input)?.single(input.namespace.as_deref())?;
    Ok((ns, routing::compile(&objects, &options(input))))
}

pub fn check(input: &Input, format: Format) -> Result<ExitCode> {
    let mut manifests = read(input)?;
    let sources = std::mem::take(&mut manifests.sources);
    let namespaces = manifests.select(input.namespace.as_deref())?;
    let compiled: Vec<(String, Compiled)> = namespaces
        .iter()
        .map(|(ns, objects)| (ns.clone(), routing::compile(objects, &options(input))))
        .collect();
    let reports = || {
        compiled
            .iter()
            .flat_map(|(ns, c)| c.reports.iter().map(move |r| (ns, r)))
    };
    let all_ready = reports().all(|(_, r)| r.is_ready());
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let objects: Vec<_> = reports().map(|(ns, r)| report_json(ns, r)).collect();
            serde_json::to_writer_pretty(&mut out, &json!({ "objects": objects }))?;
            writeln!(out)?;
        }
        Format::Text => {
            let several = compiled.len() > 1;
            for (ns, r) in reports() {
                let prefix = if several {
                    format!("{}/", display_ns(ns))
                } else {
                    String::new()
                };
                let locate = |message: &str| sources.locate(ns, r.kind, &r.name, message);
                write_report(&mut out, &prefix, r, locate)?;
            }
            let total = reports().count();
            let ready = reports().filter(|(_, r)| r.is_ready()).count();
            writeln!(
                out,
                "{total} object(s): {ready} ready, {} not ready",
                total - ready
            )?;
        }
    }
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_json(ns: &str, r: &ObjectReport) -> serde_json::Value {
    let conditions: Vec<_> = r
        .conditions
        .iter()
        .map(|c| json!({"type": c.type_, "status": c.status_str(), "reason": c.reason, "message": c.message}))
        .collect();
    let mut v = json!({"kind": r.kind.as_str(), "name": r.name, "conditions": conditions});
    if !ns.is_empty() {
        v["namespace"] = json!(ns);
    }
    if r.kind == routing::crd::Kind::MailContact {
        v["primaryAddress"] = json!(r.primary_address);
        v["addresses"] = json!(r.addresses);
    }
    v
}

/// An object's conditions; its problems, an InvalidSpec one with the file
/// and line of the field it names (`locate`).
fn write_report(
    out: &mut impl Write,
    prefix: &str,
    r: &ObjectReport,
    locate: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    let [ready, loop_risk, conflict] = &r.conditions;
    let flag = |c: &routing::ConditionSummary| {
        // The reason matters when the condition is bad: Ready False, the others True.
        let bad = c.status != (c.type_ == routing::report::READY);
        if bad {
            format!("{}={} ({})", c.type_, c.status_str(), c.reason)
        } else {
            format!("{}={}", c.type_, c.status_str())
        }
    };
    writeln!(
        out,
        "{prefix}{}/{}: {}  {}  {}",
        r.kind,
        r.name,
        flag(ready),
        flag(loop_risk),
        flag(conflict)
    )?;
    if r.is_ready() {
        writeln!(out, "    {}", ready.message)?;
    } else {
        for p in &r.problems {
            let at = match p.reason {
                routing::report::Reason::InvalidSpec => locate(&p.message),
                _ => None,
            };
            let at = at.map(|a| format!("{a}: ")).unwrap_or_default();
            writeln!(out, "    {at}{}: {}", p.reason.as_str(), p.message)?;
        }
    }
    Ok(())
}

pub fn trace(
    input: &Input,
    address: &str,
    relay_allowed: bool,
    format: Format,
) -> Result<ExitCode> {
    let (_, compiled) = compile_one(input)?;
    let routing = &compiled.routing;
    let (decision, steps) = routing.trace(address, relay_allowed);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let mut v = json!({"action": decision.action()});
            match &decision {
                Decision::Forward {
                    recipient,
                    connector,
                } => {
                    let c = routing.connector(*connector);
                    v["recipient"] = json!(recipient);
                    v["connector"] = json!(c.name);
                    v["hosts"] = json!(
                        c.smart_hosts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                    );
                    v["mx"] = json!(c.smart_hosts.is_empty());
                }
                Decision::Reply(r) => {
                    v["reply"] = json!({"code": r.code, "enhanced": r.enhanced, "text": r.text});
                }
            }
            v["reason"] = json!(decision.reason());
            v["steps"] = json!(steps);
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "Resolving {address}{}:",
                if relay_allowed {
                    " (client may relay)"
                } else {
                    ""
                }
            )?;
            for (i, s) in steps.iter().enumerate() {
                writeln!(out, "  {}. {s}", i + 1)?;
            }
            match &decision {
                Decision::Forward {
                    recipient,
                    connector,
                } => {
                    let c = routing.connector(*connector);
                    let hosts = match c.smart_hosts.len() {
                        0 => format!("the MX of {}", recipient.rsplit('@').next().unwrap_or("")),
                        _ => c.hosts_display().join(", "),
                    };
                    writeln!(
                        out,
                        "=> forward to {hosts} via SmtpConnector/{} as <{recipient}>",
                        c.name
                    )?;
                }
                Decision::Reply(r) => {
                    writeln!(
                        out,
                        "=> {}: {} {} {}",
                        decision.action(),
                        r.code,
                        r.enhanced,
                        r.text
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn compile(input: &Input, dir: &Path) -> Result<ExitCode> {
    let (ns, compiled) = compile_one(input)?;
    let encoded = encode(compiled.table());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Remove table files of an earlier, larger table so the directory holds exactly this one.
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name == MANIFEST_KEY || name.ends_with(".zst");
        if ours && !encoded.files.contains_key(name) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for (key, bytes) in &encoded.files {
        let path = dir.join(key);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let not_ready = compiled.reports.iter().filter(|r| !r.is_ready()).count();
    eprintln!(
        "wrote {} file(s), {} bytes, to {} (namespace {}, version {})",
        encoded.files.len(),
        encoded.total_bytes(),
        dir.display(),
        display_ns(&ns),
        &encoded.manifest.version[..16]
    );
    if not_ready > 0 {
        eprintln!("note: {not_ready} object(s) not Ready: run `mailroute check` for details");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(
    source: &crate::ImportSource,
    namespace: Option<&str>,
    dir: Option<&Path>,
) -> Result<ExitCode> {
    use operator::import::postfix;
    let read =
        |path: &str| std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"));
    let imported = match source {
        crate::ImportSource::Csvde {
            file,
            authoritative,
        } => {
            let name = file.display().to_string();
            let bytes = std::fs::read(file).with_context(|| format!("reading {name}"))?;
            operator::import::csvde::import(&name, &bytes, authoritative, namespace)
                .map_err(anyhow::Error::msg)?
        }
        crate::ImportSource::Sendmail {
            aliases,
            virtusertable,
            mailertable,
            local_domains,
        } => {
            let text = |p: &Option<std::path::PathBuf>| -> Result<Option<(String, String)>> {
                let Some(p) = p else { return Ok(None) };
                let name = p.display().to_string();
                let text = read(&name).map_err(anyhow::Error::msg)?;
                Ok(Some((name, text)))
            };
            let (a, v, m) = (text(aliases)?, text(virtusertable)?, text(mailertable)?);
            if a.is_none() && v.is_none() && m.is_none() {
                anyhow::bail!("import sendmail: give --aliases, --virtusertable or --mailertable");
            }
            let files = operator::import::sendmail::Files {
                aliases: pair(&a),
                virtusertable: pair(&v),
                mailertable: pair(&m),
                local_domains,
            };
            operator::import::sendmail::import(&files, namespace).map_err(anyhow::Error::msg)?
        }
        crate::ImportSource::Postfix {
            main_cf,
            virtual_alias_maps,
            transport_maps,
            relay_recipient_maps,
            relay_domains,
        } => {
            let name = main_cf.display().to_string();
            let text = read(&name).map_err(anyhow::Error::msg)?;
            let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
            let overrides = postfix::Overrides {
                virtual_alias_maps: path(virtual_alias_maps),
                transport_maps: path(transport_maps),
                relay_recipient_maps: path(relay_recipient_maps),
                relay_domains: relay_domains.clone(),
            };
            postfix::import(&name, &text, &overrides, &read, namespace)
                .map_err(anyhow::Error::msg)?
        }
    };
    let documents = imported.documents();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in &documents {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for (_, yaml) in &documents {
                out.write_all(b"---\n")?;
                out.write_all(yaml.as_bytes())?;
            }
        }
    }
    eprintln!("{}", imported.summary());
    Ok(ExitCode::SUCCESS)
}

fn pair(x: &Option<(String, String)>) -> Option<(&str, &str)> {
    x.as_ref().map(|(n, t)| (n.as_str(), t.as_str()))
}

pub fn crds() -> Result<ExitCode> {
    print!("{}", crds_yaml()?);
    Ok(ExitCode::SUCCESS)
}

/// `mailroute htpasswd USER`: the password is the first line of stdin
/// (never an argument, which `ps` and shell history would show).
pub fn htpasswd(user: &str, cost: u32) -> Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("no password on stdin");
    }
    let line = routing::grants::password::htpasswd_line(user, password, cost)
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// The CRDs as one multi-document YAML stream: the content of `crds/`.
pub fn crds_yaml() -> Result<String> {
    let mut out = String::new();
    for crd in routing::crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

pub async fn cleanup(options: &operator::cleanup::Options) -> Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let deleted = operator::cleanup::run(client, options).await?;
    if deleted.is_empty() {
        println!("nothing to delete");
    }
    for d in deleted {
        println!("deleted {d}");
    }
    Ok(ExitCode::SUCCESS)
}
