//! Config files for service binaries.
//!
//! Every service takes an optional TOML file, `--config FILE`, whose keys are the service's
//! long flag names (`listen = "127.0.0.1:6200"`, `worker_interval = 5`, `device = ["/d1",
//! "/d2"]`; `_` and `-` are the same). What is set closer to the process wins: a flag on the
//! command line, then the flag's environment variable, then the file, then the default. An
//! unknown key is an error that lists the known ones, so a typo never goes unnoticed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, Parser};

/// Why a service's settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error(transparent)]
    Args(#[from] clap::Error),
}

/// Parses the process's flags merged with its `--config` file; prints the error (or the
/// help) and exits as clap does when they are wrong.
pub fn parse<T: Parser>() -> T {
    match parse_from::<T, _>(std::env::args_os()) {
        Ok(t) => t,
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// [`parse`] over the given arguments (the first is the program name).
pub fn parse_from<T: Parser, I: IntoIterator<Item = OsString>>(args: I) -> Result<T, ConfigError> {
    let cmd = T::command().arg(
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .help("TOML file of settings, keyed by long flag name; flags override it"),
    );
    let args: Vec<OsString> = args.into_iter().collect();
    let file = config_path(&args);
    let mut argv: Vec<OsString> = args.iter().take(1).cloned().collect();
    if let Some(path) = file {
        argv.extend(file_args(&cmd, &path, &args)?);
    }
    argv.extend(args.iter().skip(1).cloned());
    let matches = cmd.try_get_matches_from(argv)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The value of `--config` among `args`, if given.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// Whether `--long` (or `--long=…`) is on the command line.
fn given(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&with_value)
    })
}

/// The file's settings as flags, leaving out those the command line or the environment set.
fn file_args(cmd: &Command, path: &Path, args: &[OsString]) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |msg: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        msg,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| {
                let known: Vec<String> = cmd
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| !matches!(*l, "config" | "help" | "version"))
                    .map(|l| l.replace('-', "_"))
                    .collect();
                invalid(format!(
                    "unknown setting {key:?} (settings: {})",
                    known.join(", ")
                ))
            })?;
        if given(args, &long) {
            continue;
        }
        if arg
            .get_env()
            .is_some_and(|var| std::env::var_os(var).is_some())
        {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items,
            v => vec![v],
        };
        for v in values {
            let text = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => {
                    if matches!(arg.get_action(), ArgAction::SetTrue) {
                        if b {
                            out.push(OsString::from(format!("--{long}")));
                        }
                        continue;
                    }
                    b.to_string()
                }
                other => {
                    return Err(invalid(format!(
                        "{key}: a {} is not a setting value",
                        other.type_str()
                    )))
                }
            };
            out.push(OsString::from(format!("--{long}={text}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long, default_value = "127.0.0.1:1")]
        listen: String,
        #[arg(long = "device")]
        devices: Vec<String>,
        #[arg(long, default_value_t = 5.0)]
        worker_interval: f64,
        #[arg(long)]
        verbose: bool,
    }

    fn run(file: &str, flags: &[&str]) -> Result<Args, ConfigError> {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec![OsString::from("svc"), "--config".into(), path.into()];
        argv.extend(flags.iter().map(OsString::from));
        parse_from::<Args, _>(argv)
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("stratus-config-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn file_settings_apply_and_flags_override_them() {
        let a = run(
            "listen = \"127.0.0.1:7\"\nworker_interval = 2\ndevice = [\"/a\", \"/b\"]\nverbose = true\n",
            &["--listen", "127.0.0.1:9"],
        )
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:9");
        assert_eq!(a.worker_interval, 2.0);
        assert_eq!(a.devices, ["/a", "/b"]);
        assert!(a.verbose);
        let b = run("device = [\"/a\"]\n", &["--device=/z"]).unwrap();
        assert_eq!(b.devices, ["/z"]);
    }

    #[test]
    fn unknown_keys_and_bad_files_are_refused() {
        let e = run("lisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown setting \"lisen\"") && e.contains("listen"),
            "{e}"
        );
        let e = run("listen = \n", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        let e = run("worker_interval = \"soon\"\n", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Args(_)), "{e}");
        let e =
            parse_from::<Args, _>(["svc", "--config", "/nonexistent/x.toml"].map(OsString::from))
                .unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }
}
