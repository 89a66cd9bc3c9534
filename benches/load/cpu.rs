//! Where the CPU goes: per-process accounting from `/proc`, the RSA-2048 sign + verify
//! calibration that payroute's cost is measured against, and `perf record` on payroute.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::processes::MANIFEST_DIR;
use crate::report::results_dir;
use crate::Phases;

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 when getconf is unavailable).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state field.
    Ok(tick(11)? + tick(12)?)
}

/// A `/proc/<pid>/status` field in its unit (KiB for memory), e.g. `VmHWM`, `Threads`.
pub fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Peak resident set size (`VmHWM`) of a process so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    Ok(status_field(pid, "VmHWM")? as f64 / 1024.0)
}

/// Context switches (voluntary + involuntary) of the process's live threads.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten().take(10_000) {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// CPU time of the calling thread in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`). Not
/// `/proc/thread-self/schedstat`: the kernel brings a running thread's total up to date there
/// only at a scheduler tick or a switch, so a reading within a burst of a millisecond or two is
/// behind by up to a tick (a measure made that way put the floor at half its real cost).
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let ns = u64::try_from(t.tv_sec).ok()? * 1_000_000_000 + u64::try_from(t.tv_nsec).ok()?;
    (ns > 0).then_some(ns)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU ticks of payroute, the simulator and this generator at one moment.
#[derive(Clone, Copy)]
pub struct CpuSample {
    pub serve: u64,
    pub sandbox: u64,
    pub generator: u64,
    /// Context switches of payroute's threads.
    pub switches: u64,
    /// Every PostgreSQL server process on this machine (the PostgreSQL ledger's share).
    pub database: u64,
    pub at: Instant,
}

/// A `CpuSample` of payroute (`serve`), the simulator (`sandbox`) and this process, now.
pub fn sample(serve: u32, sandbox: u32) -> anyhow::Result<CpuSample> {
    Ok(CpuSample {
        serve: cpu_ticks(&serve.to_string())?,
        sandbox: cpu_ticks(&sandbox.to_string())?,
        generator: cpu_ticks("self")?,
        switches: context_switches(serve),
        database: postgres_ticks(),
        at: Instant::now(),
    })
}

/// utime + stime of every process named `postgres` (the server and its backends), in clock
/// ticks; 0 without any. Backends that exit between two samples take their ticks with them, so
/// this is a lower bound (the ledger's pooled connections live for the whole run).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| cpu_ticks(&pid).ok())
        .sum()
}

/// The RSA floor: seconds of CPU for one RSA-2048 PKCS#1 v1.5 SHA-256 signature plus one
/// verification, single-threaded, with aws-lc-rs (what payroute signs with) and, for reference,
/// with ring (what it signed with before).
pub struct RsaFloor {
    pub aws_lc: f64,
    pub ring: f64,
    pub clock: &'static str,
}

/// About the size of an Alipay precreate sign string.
fn floor_message() -> String {
    "app_id=2021000000000001&biz_content={\"out_trade_no\":\"BENCH0000000001\",\
        \"total_amount\":\"19.99\",\"subject\":\"bench\",\"product_code\":\"FACE_TO_FACE_PAYMENT\"}\
        &charset=utf-8&method=alipay.trade.precreate&notify_url=http://127.0.0.1:8701/notify/alipay\
        &sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"
        .repeat(2)
}

/// The sandbox's TEST key as PKCS#8 DER.
fn floor_key() -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(
        Path::new(MANIFEST_DIR).join("sandbox/keys/alipay_app_private.pem"),
    )?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64.trim())?)
}

/// Measures both libraries, each after a warm-up, on the same key and message.
pub fn rsa_baseline(iterations: u32) -> anyhow::Result<RsaFloor> {
    let der = floor_key()?;
    let message = floor_message();
    let (aws_lc, clock) = time_per_call(iterations, aws_lc_sign_verify(&der, message.as_bytes())?)?;
    let (ring, _) = time_per_call(iterations, ring_sign_verify(&der, message.as_bytes())?)?;
    Ok(RsaFloor {
        aws_lc,
        ring,
        clock,
    })
}

/// Sign + verify calls per sample of [`LoadedFloor`], and the pause between samples: about
/// 1.5% of one CPU, so that measuring the floor barely takes from what it is measured in.
const LOADED_BURST: u32 = 4;
const LOADED_PAUSE: Duration = Duration::from_millis(100);

/// The floor measured while a load phase runs: a few aws-lc-rs sign + verify calls every
/// 100 ms on a thread of the bench's own, in that thread's CPU time. payroute signs under the
/// same conditions (both CPUs busy, caches and the host shared), which a measure taken on an
/// idle machine before or after the phase does not see.
pub struct LoadedFloor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Option<f64>>>,
}

impl LoadedFloor {
    pub fn start() -> anyhow::Result<Self> {
        let der = floor_key()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("loaded-floor".into())
            .spawn(move || {
                let message = floor_message();
                let mut once = aws_lc_sign_verify(&der, message.as_bytes())?;
                for _ in 0..20 {
                    once()?;
                }
                let (mut ns, mut calls) = (0u64, 0u32);
                while !stopped.load(Ordering::Relaxed) {
                    let Some(before) = thread_cpu_ns() else {
                        return Ok(None);
                    };
                    for _ in 0..LOADED_BURST {
                        once()?;
                    }
                    let Some(after) = thread_cpu_ns() else {
                        return Ok(None);
                    };
                    ns += after.saturating_sub(before);
                    calls += LOADED_BURST;
                    std::thread::sleep(LOADED_PAUSE);
                }
                Ok((calls > 0).then(|| ns as f64 / 1e9 / f64::from(calls)))
            })?;
        Ok(LoadedFloor { stop, thread })
    }

    /// Seconds of CPU per sign + verify over the phase (`None` where thread CPU time cannot be
    /// read: wall time under load would say nothing).
    pub fn finish(self) -> anyhow::Result<Option<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the loaded-floor thread panicked"))?
    }
}

fn aws_lc_sign_verify<'a>(
    der: &[u8],
    message: &'a [u8],
) -> anyhow::Result<impl FnMut() -> anyhow::Result<()> + 'a> {
    use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaKeyPair};
    let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| anyhow!("TEST key: {e}"))?;
    // Parsed once, as payroute keeps its channels' public keys.
    let public = ParsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    )
    .map_err(|e| anyhow!("TEST public key: {e}"))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut sig = vec![0u8; pair.public_modulus_len()];
    Ok(move || {
        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .map_err(|e| anyhow!("sign: {e}"))?;
        public
            .verify_sig(message, &sig)
            .map_err(|e| anyhow!("verify: {e}"))
    })
}

fn ring_sign_verify<'a>(
    der: &[u8],
    message: &'a [u8],
) -> anyhow::Result<impl FnMut() -> anyhow::Result<()> + 'a> {
    use ring::signature::{self, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
    let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| anyhow!("TEST key: {e}"))?;
    let public = UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref().to_vec(),
    );
    let rng = ring::rand::SystemRandom::new();
    let mut sig = vec![0u8; pair.public().modulus_len()];
    Ok(move || {
        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .map_err(|e| anyhow!("sign: {e}"))?;
        public
            .verify(message, &sig)
            .map_err(|e| anyhow!("verify: {e}"))
    })
}

/// CPU seconds per call of `once` on this thread (wall seconds where thread CPU time cannot be
/// read), after 20 warm-up calls.
fn time_per_call(
    iterations: u32,
    mut once: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, &'static str)> {
    for _ in 0..20 {
        once()?;
    }
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..iterations {
        once()?;
    }
    let wall = wall0.elapsed().as_secs_f64() / f64::from(iterations);
    match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Ok((
            (b - a) as f64 / 1e9 / f64::from(iterations),
            "thread CPU time",
        )),
        _ => Ok((wall, "wall time")),
    }
}

/// `perf record -g` on payroute for the saturation window (it stops by itself).
pub fn start_perf(pid: u32, phases: &Phases) -> anyhow::Result<Child> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let secs = (phases.warmup + phases.saturation).as_secs().max(1);
    Command::new("perf")
        .args(["record", "-g", "-p", &pid.to_string(), "-o"])
        .arg(dir.join("perf.data"))
        .args(["--", "sleep", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start perf")
}

/// Waits (up to 60 s) for `perf record` to finish writing its file.
pub async fn finish_perf(mut perf: Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = perf.try_wait()? {
            eprintln!(
                "perf record finished ({status}): {}",
                results_dir().join("perf.data").display()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = perf.kill();
    let _ = perf.wait();
    bail!("perf record did not finish within 60 s")
}
