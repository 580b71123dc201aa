//! Starting the program under test per the contract (`README.md`, "The contract"): its
//! command line for stages 1 to 5, its config file for stage 6 and later; and the nginx and
//! HAProxy configurations that `--print-config` prints for `--addr` mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::program::{self, Program};

/// What one instance of the program is started with.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The origins it forwards to.
    pub backends: Vec<SocketAddr>,
    /// `(workers, queue)`: a small pool (stage 4's full-queue check).
    pub pool: Option<(usize, usize)>,
    /// A short upstream read timeout in milliseconds (stage 1's slow-origin check).
    pub upstream_timeout_ms: Option<u64>,
    /// Extra TOML appended to the config (stages 7 to 9).
    pub extra_toml: String,
    /// Stage 6's broken config: this exact text is the file, and the program must refuse it.
    pub raw_config: Option<String>,
}

/// Starts instances of one program.
pub struct Launcher {
    pub command: String,
    pub args: Vec<String>,
    pub stage: u8,
    dir: PathBuf,
    files: AtomicU32,
}

impl Launcher {
    /// A launcher that writes its config files to a fresh temporary directory.
    pub fn new(command: &str, args: &[String], stage: u8) -> Result<Launcher, String> {
        let dir = std::env::temp_dir().join(format!(
            "grade-{}-{}",
            std::process::id(),
            program::free_port()?
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Launcher {
            command: command.to_string(),
            args: args.to_vec(),
            stage,
            dir,
            files: AtomicU32::new(0),
        })
    }

    /// The directory for files the checks write (certificates).
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// The command line (and config file) for `setup` on `port`.
    pub fn command_line(&self, setup: &Setup, port: u16) -> Result<Vec<String>, String> {
        let config = if self.stage >= 6 {
            let n = self.files.fetch_add(1, Ordering::SeqCst);
            let path = self.dir.join(format!("proxy-{n}.toml"));
            let text = match &setup.raw_config {
                Some(text) => text.replace("{port}", &port.to_string()),
                None => revproxy_config(self.stage, port, setup),
            };
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Some(path.display().to_string())
        } else {
            None
        };
        let first = setup
            .backends
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let placeholders = ["{port}", "{backend}", "{backend_port}", "{config}"];
        if self
            .args
            .iter()
            .any(|a| placeholders.iter().any(|p| a.contains(p)))
        {
            let backend_port = setup
                .backends
                .first()
                .map(|a| a.port().to_string())
                .unwrap_or_default();
            return Ok(self
                .args
                .iter()
                .map(|a| {
                    a.replace("{port}", &port.to_string())
                        .replace("{backend_port}", &backend_port)
                        .replace("{backend}", &first)
                        .replace("{config}", config.as_deref().unwrap_or(""))
                })
                .collect());
        }
        let mut args = self.args.clone();
        if let Some(config) = config {
            args.extend(["--config".to_string(), config]);
            return Ok(args);
        }
        args.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
        for backend in &setup.backends {
            args.extend(["--backend".to_string(), backend.to_string()]);
        }
        if let Some((workers, queue)) = setup.pool {
            args.extend([
                "--workers".to_string(),
                workers.to_string(),
                "--queue".to_string(),
                queue.to_string(),
            ]);
        }
        if let Some(ms) = setup.upstream_timeout_ms {
            args.extend(["--upstream-timeout".to_string(), format!("{ms}ms")]);
        }
        Ok(args)
    }

    /// Starts an instance and waits until it accepts.
    pub fn start(&self, setup: &Setup) -> Result<Program, String> {
        let port = program::free_port()?;
        let args = self.command_line(setup, port)?;
        match Program::start(&self.command, &args, port) {
            // The free port was taken between the grader's look and the program's bind
            // (another test's connection, say): once more, on another port.
            Err(e) if e.contains("in use") => {
                let port = program::free_port()?;
                let args = self.command_line(setup, port)?;
                Program::start(&self.command, &args, port)
            }
            result => result,
        }
    }

    /// Starts an instance that is expected to exit (a broken config): its command line too.
    pub fn start_raw(&self, setup: &Setup) -> Result<(Program, String), String> {
        let port = program::free_port()?;
        let args = self.command_line(setup, port)?;
        let config = args
            .iter()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .cloned()
            .unwrap_or_default();
        Program::spawn(&self.command, &args, port).map(|p| (p, config))
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config file of the reference's vocabulary: the contract's subset, and what `stage`
/// needs on top of it.
pub fn revproxy_config(stage: u8, port: u16, setup: &Setup) -> String {
    let mut text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    if let Some((workers, queue)) = setup.pool {
        text.push_str(&format!("workers = {workers}\nqueue = {queue}\n"));
    }
    let servers: Vec<String> = setup.backends.iter().map(|a| format!("\"{a}\"")).collect();
    text.push_str(&format!(
        "\n[upstreams.app]\nservers = [{}]\n",
        servers.join(", ")
    ));
    if let Some(ms) = setup.upstream_timeout_ms {
        text.push_str(&format!("read_timeout_ms = {ms}\n"));
    }
    text.push_str(
        "\n[upstreams.app.health]\npath = \"/health\"\ninterval_ms = 500\ntimeout_ms = 500\nrise = 1\nfall = 2\n",
    );
    let _ = stage;
    text.push_str(&setup.extra_toml);
    text
}

/// `grade --print-config nginx`: nginx in front of the fixed origins, on `listen`.
pub fn nginx_config(stage: u8, listen: u16, origins: &[SocketAddr]) -> String {
    let servers: String = origins_for(stage, origins)
        .iter()
        .map(|a| format!("        server {a} max_fails=0;\n"))
        .collect();
    format!(
        "# nginx in front of grade's origins: `grade --stage {stage} --addr 127.0.0.1:{listen}`.
# Run: nginx -p /tmp/grade-nginx -c /tmp/grade-nginx/nginx.conf (the prefix needs logs/).
worker_processes 1;
daemon off;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path client_body;
    proxy_temp_path proxy_temp;
    # Short upstream timeouts, so grade's slow-origin check sees a 504 within its patience.
    proxy_connect_timeout 2s;
    proxy_read_timeout 2s;
    # max_fails=0: grade kills and restarts its origins between checks, and nginx's passive
    # marking (max_fails=1 fail_timeout=10s) would keep a restarted origin out for 10 s.
    upstream app {{
{servers}        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            # Stream responses instead of spooling them to disk.
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"
    )
}

/// `grade --print-config haproxy`: HAProxy in front of the fixed origins, on `listen`.
pub fn haproxy_config(stage: u8, listen: u16, origins: &[SocketAddr]) -> String {
    let servers: String = origins_for(stage, origins)
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server o{i} {a}\n"))
        .collect();
    format!(
        "# HAProxy in front of grade's origins: `grade --stage {stage} --addr 127.0.0.1:{listen}`.
# Run: haproxy -f haproxy.cfg
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    # Short server timeout, so grade's slow-origin check sees a 504 within its patience.
    timeout server 2s
    timeout client 30s
    timeout http-request 10s
    retries 2
    option redispatch
frontend grade
    bind 127.0.0.1:{listen}
    default_backend app
backend app
    balance roundrobin
{servers}"
    )
}

/// One origin below stage 5, all three from stage 5 on.
fn origins_for(stage: u8, origins: &[SocketAddr]) -> Vec<SocketAddr> {
    if stage >= 5 {
        origins.to_vec()
    } else {
        origins.iter().take(1).copied().collect()
    }
}

/// What the config adds at `stage` (7 to 9) to the contract's subset, in the reference's
/// keys: the cache on (7); an API key, a denied prefix and a rate limit (8); routes by Host
/// and path to origins 1 and 2, compression and WebSocket upgrades (9). TLS is added for the
/// main instance alone ([`tls_toml`]), since its port is fixed.
pub fn stage_toml(stage: u8, origins: &[SocketAddr]) -> String {
    let mut text = String::new();
    if stage >= 7 {
        text.push_str("\n[cache]\nenabled = true\n");
    }
    if stage >= 8 {
        text.push_str(&format!(
            "\n[access.keys]\nlist = [{{ name = \"grader\", key = \"{}\" }}]\n\
             \n[[access.rules]]\npath = \"/keyed\"\nauth = \"key\"\n\
             \n[[access.rules]]\npath = \"/blocked\"\nip = [\"deny all\"]\n\
             \n[[access.rules]]\npath = \"/limited\"\nlimit = {{ rate = \"1r/m\", burst = 0, nodelay = true }}\n",
            crate::checks::API_KEY
        ));
    }
    if stage >= 9 && origins.len() >= 3 {
        text.push_str(&format!(
            "\n[upstreams.one]\nservers = [\"{}\"]\n\n[upstreams.two]\nservers = [\"{}\"]\n\
             \n[[routes]]\nname = \"by-host\"\nhosts = [\"one.grade.test\"]\nupstream = \"one\"\n\
             \n[[routes]]\nname = \"by-path\"\npath = \"/two\"\nupstream = \"two\"\n\
             \n[[routes]]\nname = \"rest\"\npath = \"/\"\nupstream = \"app\"\n\
             \n[compression]\nenabled = true\nmin_length = 256\n\
             \n[upgrades]\nenabled = true\n",
            origins[1], origins[2]
        ));
    }
    text
}

/// The main instance's TLS listener at stage 9: its port and the certificate files.
pub fn tls_toml(port: u16, cert: &str, key: &str) -> String {
    format!(
        "\n[tls]\nlisten = \"127.0.0.1:{port}\"\ncertificates = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n"
    )
}
