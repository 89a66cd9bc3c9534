//! The Helm chart in `charts/payroute`: `helm lint`, renders of both sidecar modes validated
//! against the Kubernetes 1.29 and 1.33 schemas (`kubernetes-validate --strict`), assertions on
//! the rendered objects, a consumer chart that includes the sidecar templates, and the alert
//! rules and dashboard queries checked by `promtool`.
//!
//! Tools: `helm` (env `PAYROUTE_HELM`, else PATH), `python3 -m kubernetes_validate` (with
//! `PAYROUTE_KUBERNETES_VALIDATE_PATH` as PYTHONPATH when set) and, optionally, `promtool`
//! (env `PAYROUTE_PROMTOOL`, else PATH). Without helm or kubernetes-validate a test prints why it
//! is skipped and passes — except under CI (env `CI` set), where it fails and says how to install
//! the missing tool.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const RELEASE: &str = "t";
const FULLNAME: &str = "t-payroute";
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29", "1.33"];

/// Every metric of the metrics contract; the dashboard shows each of them.
const CONTRACT_METRICS: [&str; 17] = [
    "payroute_channel_requests_total",
    "payroute_channel_request_duration_seconds",
    "payroute_route_decisions_total",
    "payroute_failovers_total",
    "payroute_channel_circuit_state",
    "payroute_rate_limited_total",
    "payroute_config_reloads_total",
    "payroute_config_last_reload_successful",
    "payroute_config_info",
    "payroute_duplicate_payments_total",
    "payroute_http_requests_total",
    "payroute_http_request_duration_seconds",
    "payroute_paid_amount_fen_total",
    "payroute_estimated_fee_fen_total",
    "payroute_notifications_total",
    "payroute_ledger_write_duration_seconds",
    "payroute_build_info",
];

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/payroute")
}

/// An executable named by `var`, else found on PATH.
fn find_tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The external tools, and a private helm home so that the user's repositories and caches are
/// neither read nor written.
struct Tools {
    helm: PathBuf,
    kv_path: Option<OsString>,
    promtool: Option<PathBuf>,
    home: tempfile::TempDir,
}

/// The tools, or `None` (skip) when one is missing outside CI; under CI a missing tool fails.
fn tools(test: &str) -> Option<Tools> {
    let mut missing = Vec::new();
    let helm = find_tool("PAYROUTE_HELM", "helm");
    if helm.is_none() {
        missing.push(
            "helm not found (install with ../shared/tools/install-helm DIR, then put DIR on PATH \
             or set PAYROUTE_HELM=DIR/helm)",
        );
    }
    let kv_path = std::env::var_os("PAYROUTE_KUBERNETES_VALIDATE_PATH").filter(|p| !p.is_empty());
    let mut probe = Command::new("python3");
    probe.args(["-m", "kubernetes_validate", "--version"]);
    if let Some(p) = &kv_path {
        probe.env("PYTHONPATH", p);
    }
    if !probe.output().is_ok_and(|o| o.status.success()) {
        missing.push(
            "kubernetes-validate not found (install with python3 -m pip install --target DIR \
             kubernetes-validate, then set PAYROUTE_KUBERNETES_VALIDATE_PATH=DIR)",
        );
    }
    if !missing.is_empty() {
        let why = missing.join("; ");
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {why}");
        }
        eprintln!("{test} skipped: {why}");
        return None;
    }
    Some(Tools {
        helm: helm.expect("checked above"),
        kv_path,
        promtool: find_tool("PAYROUTE_PROMTOOL", "promtool"),
        home: tempfile::tempdir().expect("temp dir"),
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Tools {
    fn helm(&self, args: &[&str]) -> Output {
        let h = self.home.path();
        Command::new(&self.helm)
            .args(args)
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_DATA_HOME", h.join("data"))
            .output()
            .expect("run helm")
    }

    /// `helm template t <chart> <args>`, which must succeed.
    fn render_chart(&self, chart: &Path, args: &[&str]) -> String {
        let chart = chart.to_str().expect("utf-8 path");
        let mut all = vec!["template", RELEASE, chart];
        all.extend_from_slice(args);
        let out = self.helm(&all);
        assert!(out.status.success(), "helm {all:?} failed:\n{}", text(&out));
        String::from_utf8(out.stdout).expect("utf-8 manifest")
    }

    fn render(&self, args: &[&str]) -> String {
        self.render_chart(&chart_dir(), args)
    }

    /// `helm template` that must fail; returns its error output.
    fn render_error(&self, args: &[&str]) -> String {
        let chart = chart_dir();
        let mut all = vec!["template", RELEASE, chart.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let out = self.helm(&all);
        assert!(!out.status.success(), "helm {all:?} should have failed");
        text(&out)
    }

    /// kubernetes-validate --strict against every version in KUBERNETES_VERSIONS.
    fn validate(&self, manifest: &str, what: &str) {
        let file = self.home.path().join(format!("{what}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        for k in KUBERNETES_VERSIONS {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "kubernetes_validate", "-k", k, "--strict", "--quiet"])
                .arg(&file);
            if let Some(p) = &self.kv_path {
                cmd.env("PYTHONPATH", p);
            }
            let out = cmd.output().expect("run kubernetes-validate");
            assert!(
                out.status.success(),
                "{what}: kubernetes-validate -k {k} --strict failed:\n{}",
                text(&out)
            );
        }
    }

    /// Runs promtool with `args`, or says that it is skipped.
    /// `promtool check rules` on `rules`, then, if promtool ran, `promtool test rules` with the
    /// repository's alert unit tests, copied into `dir` beside the `rules.yaml` they load.
    /// `what` tells the runs apart in the report.
    fn check_and_test_rules(&self, what: &str, rules: &Path, dir: &Path) {
        let unit_tests = dir.join("alerts.test.yaml");
        std::fs::copy(repo().join("tests/chart/alerts.test.yaml"), &unit_tests).unwrap();
        let arg = |s: &str| OsString::from(s);
        if self.promtool(
            &format!("promtool check rules{what}"),
            &[&arg("check"), &arg("rules"), &rules.into()],
        ) {
            self.promtool(
                &format!("promtool test rules{what}"),
                &[&arg("test"), &arg("rules"), &unit_tests.into()],
            );
        }
    }

    fn promtool(&self, what: &str, args: &[&OsString]) -> bool {
        let Some(p) = &self.promtool else {
            eprintln!("{what} skipped: promtool not found (apt-get install prometheus)");
            return false;
        };
        let out = Command::new(p).args(args).output().expect("run promtool");
        assert!(out.status.success(), "{what} failed:\n{}", text(&out));
        true
    }
}

/// The rendered documents (comments and empty documents dropped).
fn parse(manifest: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(manifest)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let all = of_kind(docs, kind);
    assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
    all[0]
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    named(&container["env"], name).map(|e| &e["value"])
}

/// Every `subPath` anywhere below `v` (there must be none: subPath mounts never update).
fn sub_paths(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            m.keys().filter(|k| *k == "subPath").count() + m.values().map(sub_paths).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(sub_paths).sum(),
        _ => 0,
    }
}

/// The checks that hold for payroute's container in both modes with default values.
fn assert_payroute_container(c: &Value) {
    assert_eq!(c["command"], json!(["/usr/local/bin/payroute"]));
    assert_eq!(
        c["args"],
        json!(["serve", "--config", "/etc/payroute/rules/routes.yaml"])
    );
    let expected_env = [
        ("PAYROUTE_API_LISTEN", "127.0.0.1:8700"),
        ("PAYROUTE_NOTIFY_LISTEN", "0.0.0.0:8701"),
        ("PAYROUTE_ADMIN_LISTEN", "0.0.0.0:8702"),
        ("PAYROUTE_DATA_DIR", "/var/lib/payroute"),
        ("PAYROUTE_SHUTDOWN_GRACE_SECS", "10"),
        ("PAYROUTE_LOG", "info"),
        ("PAYROUTE_LOG_FORMAT", "json"),
    ];
    for (k, v) in expected_env {
        assert_eq!(env(c, k), Some(&json!(v)), "env {k}");
    }
    assert_eq!(env(c, "PAYROUTE_NOTIFY_BASE_URL"), None);
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 8702, "{probe}");
    }
    let ports: Vec<_> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("payroute-notify", 8701), ("payroute-admin", 8702)]);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let mounts = &c["volumeMounts"];
    let rules = named(mounts, "payroute-rules").expect("rules mount");
    assert_eq!(rules["mountPath"], "/etc/payroute/rules");
    assert_eq!(rules["readOnly"], true);
    let keys = named(mounts, "payroute-keys").expect("keys mount");
    assert_eq!(keys["mountPath"], "/etc/payroute/keys");
    assert_eq!(keys["readOnly"], true);
    let ledger = named(mounts, "payroute-ledger").expect("ledger mount");
    assert_eq!(ledger["mountPath"], "/var/lib/payroute");
    assert_eq!(
        named(mounts, "payroute-tmp").expect("tmp")["mountPath"],
        "/tmp"
    );
}

/// Pod-level checks with default values: volumes, annotations, labels, grace period.
fn assert_pod(docs: &[Value]) {
    let deploy = one(docs, "Deployment");
    assert_eq!(deploy["metadata"]["name"], format!("{FULLNAME}-app"));
    let pod = &deploy["spec"]["template"];
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8702");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert_eq!(pod["metadata"]["labels"]["payroute/sidecar"], FULLNAME);
    let spec = &pod["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], 30, "15 + 10 + 5");
    assert_eq!(spec["securityContext"]["fsGroup"], 65532);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let vols = &spec["volumes"];
    assert_eq!(
        names(vols),
        [
            "payroute-rules",
            "payroute-keys",
            "payroute-ledger",
            "payroute-tmp"
        ]
    );
    let rules = named(vols, "payroute-rules").unwrap();
    assert_eq!(rules["configMap"]["name"], format!("{FULLNAME}-rules"));
    assert!(
        rules["configMap"].get("items").is_none(),
        "the whole ConfigMap is the directory"
    );
    let keys = named(vols, "payroute-keys").unwrap();
    assert_eq!(keys["secret"]["secretName"], "payroute-keys");
    assert_eq!(keys["secret"]["defaultMode"], 0o440);
    let ledger = named(vols, "payroute-ledger").unwrap();
    assert_eq!(ledger["emptyDir"]["sizeLimit"], "1Gi");
    assert!(ledger.get("persistentVolumeClaim").is_none());
    assert_eq!(sub_paths(pod), 0, "no subPath mounts");
    let app = named(&spec["containers"], "app").expect("demo app container");
    assert_eq!(
        env(app, "PAYROUTE_URL"),
        Some(&json!("http://127.0.0.1:8700"))
    );
    let svc = one(docs, "Service");
    assert_eq!(
        svc["spec"]["selector"],
        json!({"payroute/sidecar": FULLNAME})
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "notify", "port": 8701, "targetPort": 8701, "protocol": "TCP"}])
    );
}

/// The ConfigMap holds the `rules` value as routes.yaml, and its key files are under the Secret mount.
fn assert_rules_config_map(docs: &[Value]) {
    let cm = one(docs, "ConfigMap");
    assert_eq!(cm["metadata"]["name"], format!("{FULLNAME}-rules"));
    let routes: Value = serde_saphyr::from_str(cm["data"]["routes.yaml"].as_str().unwrap())
        .expect("routes.yaml parses");
    let channels = routes["channels"].as_object().expect("channels");
    assert_eq!(
        channels.keys().collect::<Vec<_>>(),
        ["alipay", "wechatpay"],
        "sample channels"
    );
    let mut files = Vec::new();
    for ch in channels.values() {
        for v in ch.as_object().unwrap().values() {
            if let Some(f) = v.get("file").and_then(Value::as_str) {
                files.push(f.to_string());
            }
        }
    }
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(
        files.iter().all(|f| f.starts_with("/etc/payroute/keys/")),
        "{files:?}"
    );
}

#[test]
fn lint_with_default_and_ci_values() {
    let Some(t) = tools("lint_with_default_and_ci_values") else {
        return;
    };
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    for extra in [
        &[][..],
        &["-f", "ci/native-values.yaml"][..],
        &["-f", "ci/classic-values.yaml"][..],
    ] {
        let files: Vec<String> = extra
            .iter()
            .map(|a| {
                if a.starts_with("ci/") {
                    format!("{chart}/{a}")
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut args = vec!["lint", "--strict", chart];
        args.extend(files.iter().map(String::as_str));
        let out = t.helm(&args);
        assert!(out.status.success(), "helm {args:?}:\n{}", text(&out));
        assert!(text(&out).contains("1 chart(s) linted, 0 chart(s) failed"));
    }
}

#[test]
fn native_mode_runs_payroute_as_an_init_container_with_restart_always() {
    let Some(t) = tools("native_mode") else {
        return;
    };
    let manifest = t.render(&[]);
    t.validate(&manifest, "native");
    assert!(manifest.contains("restartPolicy: Always"));
    assert!(!manifest.contains("subPath:"));
    let docs = parse(&manifest);
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "Deployment"]);
    assert_pod(&docs);
    assert_rules_config_map(&docs);
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(names(&spec["initContainers"]), ["payroute"]);
    assert_eq!(names(&spec["containers"]), ["app"]);
    let payroute = &spec["initContainers"][0];
    assert_eq!(payroute["restartPolicy"], "Always");
    assert!(
        payroute.get("lifecycle").is_none(),
        "no preStop in native mode"
    );
    assert_eq!(payroute["image"], "payroute:0.1.0");
    assert_payroute_container(payroute);

    // Every setting the chart passes is one the binary reads (PAYROUTE_LOG is the log filter,
    // read by the logger rather than by the flag parser).
    let help = Command::new(env!("CARGO_BIN_EXE_payroute"))
        .args(["serve", "--help"])
        .output()
        .expect("payroute serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for e in payroute["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        if name != "PAYROUTE_LOG" {
            assert!(
                help.contains(&format!("env: {name}")),
                "{name} unknown to payroute serve"
            );
        }
    }
}

/// The sample rules in values.yaml are valid for this payroute once their keys exist: checked
/// with `payroute check`, the key paths pointed from the Secret mount at the sandbox TEST keys.
#[test]
fn default_rules_pass_payroute_check() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .expect("values.yaml parses");
    let keys_dir = values["keys"]["mountPath"].as_str().unwrap();
    assert_eq!(keys_dir, "/etc/payroute/keys");
    let rules = values["rules"].as_str().expect("inline rules");
    let sandbox_keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/keys");
    let local = rules.replace(keys_dir, sandbox_keys.to_str().unwrap());
    assert_ne!(
        local, rules,
        "the rules reference keys under the Secret mount"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, local).unwrap();
    // The TEST keys stand in for the Secret: allowed as `serve --sandbox` would run it.
    let out = Command::new(env!("CARGO_BIN_EXE_payroute"))
        .args(["check", "--sandbox"])
        .arg(&file)
        .output()
        .expect("payroute check");
    assert!(out.status.success(), "payroute check:\n{}", text(&out));
}

#[test]
fn classic_mode_runs_payroute_as_a_container_with_a_pre_stop() {
    let Some(t) = tools("classic_mode") else {
        return;
    };
    let manifest = t.render(&["--set", "sidecar.mode=classic"]);
    t.validate(&manifest, "classic");
    let docs = parse(&manifest);
    assert_pod(&docs);
    assert_rules_config_map(&docs);
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert!(spec.get("initContainers").is_none());
    assert_eq!(names(&spec["containers"]), ["app", "payroute"]);
    let payroute = named(&spec["containers"], "payroute").unwrap();
    assert!(payroute.get("restartPolicy").is_none());
    assert_eq!(
        payroute["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 15}})
    );
    assert_payroute_container(payroute);

    // An exec preStop (images with a shell), no preStop, and a grace period that follows the drain.
    let exec = parse(&t.render(&[
        "--set",
        "sidecar.mode=classic,sidecar.preStop.type=exec,sidecar.drainSeconds=40",
    ]));
    let spec = &one(&exec, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        named(&spec["containers"], "payroute").unwrap()["lifecycle"]["preStop"],
        json!({"exec": {"command": ["/bin/sleep", "40"]}})
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 55);
    let none = parse(&t.render(&["--set", "sidecar.mode=classic,sidecar.preStop.type=none"]));
    let spec = &one(&none, "Deployment")["spec"]["template"]["spec"];
    assert!(named(&spec["containers"], "payroute")
        .unwrap()
        .get("lifecycle")
        .is_none());
}

#[test]
fn ci_values_render_storage_rules_and_monitoring_options() {
    let Some(t) = tools("ci_values") else {
        return;
    };
    let chart = chart_dir();
    let native_values = chart.join("ci/native-values.yaml");
    let native = t.render(&["-f", native_values.to_str().unwrap()]);
    t.validate(&native, "ci-native");
    let d = parse(&native);
    let pvc = one(&d, "PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], format!("{FULLNAME}-ledger"));
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(pvc["spec"]["storageClassName"], "standard");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let deploy = one(&d, "Deployment");
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(
        named(&spec["volumes"], "payroute-ledger").unwrap()["persistentVolumeClaim"]["claimName"],
        format!("{FULLNAME}-ledger")
    );
    let payroute = &spec["initContainers"][0];
    assert_eq!(payroute["image"], "registry.example.com/payroute:0.1.0");
    assert_eq!(
        env(payroute, "PAYROUTE_NOTIFY_BASE_URL"),
        Some(&json!("https://pay.example.com"))
    );
    assert_eq!(env(payroute, "PAYROUTE_LOG_FORMAT"), Some(&json!("text")));
    assert_eq!(
        named(&payroute["env"], "PAYROUTE_WECHAT_APIV3_KEY").unwrap()["valueFrom"]["secretKeyRef"]
            ["key"],
        "wechat_apiv3.key"
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 35);
    let dashboards: Vec<_> = of_kind(&d, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["name"] == format!("{FULLNAME}-dashboard"))
        .collect();
    assert_eq!(dashboards.len(), 1);
    assert_eq!(
        dashboards[0]["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let shipped: Value =
        serde_json::from_str(dashboards[0]["data"]["payroute.json"].as_str().unwrap())
            .expect("dashboard JSON in the ConfigMap");
    assert_eq!(shipped["uid"], "payroute");

    let classic_values = chart.join("ci/classic-values.yaml");
    let classic = t.render(&["-f", classic_values.to_str().unwrap()]);
    t.validate(&classic, "ci-classic");
    let d = parse(&classic);
    assert!(
        of_kind(&d, "ConfigMap").is_empty(),
        "existingConfigMap: none rendered"
    );
    assert!(
        of_kind(&d, "PersistentVolumeClaim").is_empty(),
        "existingClaim: none rendered"
    );
    let spec = &one(&d, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        named(&spec["volumes"], "payroute-rules").unwrap()["configMap"]["name"],
        "payroute-rules"
    );
    assert_eq!(
        named(&spec["volumes"], "payroute-ledger").unwrap()["persistentVolumeClaim"]["claimName"],
        "payroute-ledger"
    );
    assert_eq!(
        named(&spec["containers"], "payroute").unwrap()["lifecycle"]["preStop"]["sleep"]["seconds"],
        20
    );
    let pm = one(&d, "PodMonitor");
    assert_eq!(pm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"],
        json!({"payroute/sidecar": FULLNAME})
    );
    assert_eq!(
        pm["spec"]["podMetricsEndpoints"],
        json!([{"port": "payroute-admin", "path": "/metrics", "interval": "30s",
                "relabelings": [{"targetLabel": "job", "replacement": "payroute"}]}])
    );
    assert_eq!(
        one(&d, "PrometheusRule")["metadata"]["labels"]["release"],
        "prometheus"
    );
}

#[test]
fn monitoring_objects_need_the_monitoring_api_or_force() {
    let Some(t) = tools("monitoring_objects") else {
        return;
    };
    let enabled = "metrics.podMonitor.enabled=true,metrics.prometheusRule.enabled=true";
    let without = parse(&t.render(&["--set", enabled]));
    assert!(of_kind(&without, "PodMonitor").is_empty());
    assert!(of_kind(&without, "PrometheusRule").is_empty());
    let with = parse(&t.render(&[
        "--set",
        enabled,
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]));
    assert_eq!(of_kind(&with, "PodMonitor").len(), 1);
    let rule = one(&with, "PrometheusRule");
    let alerts: Vec<_> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        [
            "PayrouteDown",
            "PayrouteChannelErrorRatioHigh",
            "PayrouteCircuitOpen",
            "PayrouteRulesReloadFailing",
            "PayrouteNoRouteAvailable",
            "PayrouteDuplicatePayment",
            "PayrouteEventsStuck",
            "PayrouteEventsFailed",
            "PayrouteReconciliationDiscrepancies",
            "PayrouteReconciliationFailing"
        ]
    );
    let not_asked = parse(&t.render(&["--api-versions", "monitoring.coreos.com/v1"]));
    assert!(of_kind(&not_asked, "PodMonitor").is_empty());
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(t) = tools("alert_rules") else {
        return;
    };
    let spec = rendered_rule_spec(&t);
    let groups = &spec["groups"];
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML, which is what promtool reads.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, json!({ "groups": groups }).to_string()).unwrap();
    t.check_and_test_rules("", &rules, dir.path());
}

#[test]
fn dashboard_shows_every_metric_with_valid_queries() {
    let Some(t) = tools("dashboard") else {
        return;
    };
    let raw = std::fs::read_to_string(chart_dir().join("dashboards/payroute.json")).unwrap();
    let dash: Value = serde_json::from_str(&raw).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "payroute");
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    for m in CONTRACT_METRICS {
        assert!(exprs.iter().any(|e| e.contains(m)), "no panel shows {m}");
    }
    for q in ["0.5", "0.99"] {
        let wanted = format!(
            "histogram_quantile({q}, sum by (le, channel) (rate(payroute_channel_request_duration_seconds_bucket"
        );
        assert!(
            exprs.iter().any(|e| e.starts_with(&wanted)),
            "per-channel p{q}"
        );
    }
    // Each query, with Grafana's variables filled in, must be valid PromQL: promtool checks them
    // as recording rules.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$namespace", ".*")
                .replace("$channel", ".*");
            json!({"record": format!("dashboard:query_{i}:value"), "expr": e})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    let doc = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, doc.to_string()).unwrap();
    t.promtool(
        "promtool check rules (dashboard queries)",
        &[
            &OsString::from("check"),
            &OsString::from("rules"),
            &file.into_os_string(),
        ],
    );
}

const CONSUMER_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-shop
spec:
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
        {{- include "payroute.podLabels" . | nindent 8 }}
      annotations:
        {{- include "payroute.podAnnotations" . | nindent 8 }}
    spec:
      terminationGracePeriodSeconds: {{ include "payroute.terminationGracePeriodSeconds" . }}
      securityContext:
        fsGroup: 65532
      {{- with include "payroute.sidecar.initContainers" . }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: shop
          image: shop:1.0
        {{- with include "payroute.sidecar.containers" . }}
        {{- . | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "payroute.sidecar.volumes" . | nindent 8 }}
"#;

#[test]
fn a_consumer_chart_injects_the_sidecar_with_the_named_templates() {
    let Some(t) = tools("consumer_chart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let consumer = dir.path().join("shop");
    std::fs::create_dir_all(consumer.join("templates")).unwrap();
    let chart_yaml = format!(
        "apiVersion: v2\nname: shop\nversion: 1.0.0\ndependencies:\n  - name: payroute\n    version: 0.1.0\n    repository: \"file://{}\"\n",
        chart_dir().display()
    );
    std::fs::write(consumer.join("Chart.yaml"), chart_yaml).unwrap();
    std::fs::write(
        consumer.join("values.yaml"),
        "payroute:\n  demo:\n    enabled: false\n",
    )
    .unwrap();
    std::fs::write(
        consumer.join("templates/deployment.yaml"),
        CONSUMER_DEPLOYMENT,
    )
    .unwrap();
    let out = t.helm(&[
        "dependency",
        "update",
        "--skip-refresh",
        consumer.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "helm dependency update:\n{}",
        text(&out)
    );

    let manifest = t.render_chart(&consumer, &[]);
    t.validate(&manifest, "consumer-native");
    let d = parse(&manifest);
    let deploys = of_kind(&d, "Deployment");
    assert_eq!(deploys.len(), 1, "the demo is disabled");
    let pod = &deploys[0]["spec"]["template"];
    assert_eq!(deploys[0]["metadata"]["name"], "t-shop");
    assert_eq!(pod["metadata"]["labels"]["payroute/sidecar"], FULLNAME);
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "8702");
    let spec = &pod["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(names(&spec["initContainers"]), ["payroute"]);
    assert_eq!(names(&spec["containers"]), ["shop"]);
    let payroute = &spec["initContainers"][0];
    assert_eq!(payroute["restartPolicy"], "Always");
    assert_eq!(
        payroute["image"], "payroute:0.1.0",
        "the subchart's appVersion"
    );
    assert_payroute_container(payroute);
    // The subchart renders the ConfigMap and Service that the injected pod spec refers to.
    let cm = one(&d, "ConfigMap");
    assert_eq!(
        named(&spec["volumes"], "payroute-rules").unwrap()["configMap"]["name"],
        cm["metadata"]["name"]
    );
    assert_eq!(
        one(&d, "Service")["spec"]["selector"]["payroute/sidecar"],
        FULLNAME
    );

    let classic = t.render_chart(&consumer, &["--set", "payroute.sidecar.mode=classic"]);
    t.validate(&classic, "consumer-classic");
    let d = parse(&classic);
    let spec = &one(&d, "Deployment")["spec"]["template"]["spec"];
    assert!(spec.get("initContainers").is_none());
    assert_eq!(names(&spec["containers"]), ["shop", "payroute"]);
    assert_eq!(
        spec["containers"][1]["lifecycle"]["preStop"]["sleep"]["seconds"],
        15
    );
}

/// App events: the URL and the secrets file reach payroute as its settings, the Secret is mounted
/// as a directory (so a rotation reaches payroute), and a URL without a Secret fails to render.
#[test]
fn events_settings_reach_payroute_with_the_secret_mounted_as_a_file() {
    let Some(t) = tools("events_settings") else {
        return;
    };
    let set = "events.url=http://127.0.0.1:8080/payroute-events,\
               events.secret.existingSecret=payroute-events";
    for mode in ["native", "classic"] {
        let manifest = t.render(&["--set", set, "--set", &format!("sidecar.mode={mode}")]);
        t.validate(&manifest, &format!("events-{mode}"));
        let docs = parse(&manifest);
        let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        let list = if mode == "native" {
            "initContainers"
        } else {
            "containers"
        };
        let c = named(&spec[list], "payroute").expect("payroute container");
        assert_eq!(
            env(c, "PAYROUTE_EVENTS_URL"),
            Some(&json!("http://127.0.0.1:8080/payroute-events"))
        );
        assert_eq!(
            env(c, "PAYROUTE_EVENTS_SECRET_FILE"),
            Some(&json!("/etc/payroute/events/events-secret"))
        );
        let mount = named(&c["volumeMounts"], "payroute-events-secret").expect("secret mount");
        assert_eq!(mount["mountPath"], "/etc/payroute/events");
        assert_eq!(mount["readOnly"], true);
        let vol = named(&spec["volumes"], "payroute-events-secret").expect("secret volume");
        assert_eq!(vol["secret"]["secretName"], "payroute-events");
        assert_eq!(vol["secret"]["defaultMode"], 0o440);
        assert!(vol["secret"].get("items").is_none(), "the whole Secret");
        assert_eq!(sub_paths(spec), 0, "no subPath mounts");
    }
    // Another key and mount path.
    let docs = parse(&t.render(&[
        "--set",
        set,
        "--set",
        "events.secret.key=whsec,events.secret.mountPath=/var/run/events",
    ]));
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let c = named(&spec["initContainers"], "payroute").unwrap();
    assert_eq!(
        env(c, "PAYROUTE_EVENTS_SECRET_FILE"),
        Some(&json!("/var/run/events/whsec"))
    );
    // Without a URL nothing about events is rendered.
    let docs = parse(&t.render(&["--set", "events.secret.existingSecret=payroute-events"]));
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let c = named(&spec["initContainers"], "payroute").unwrap();
    assert_eq!(env(c, "PAYROUTE_EVENTS_URL"), None);
    assert!(named(&spec["volumes"], "payroute-events-secret").is_none());
    // A URL without its Secret, a typo, or a URL that is not one.
    for (set, message) in [
        (
            "events.url=http://127.0.0.1:8080/payroute-events",
            "events.url needs events.secret.existingSecret",
        ),
        (
            "events.secret.existingsecret=payroute-events",
            "additional properties 'existingsecret' not allowed",
        ),
        ("events.url=127.0.0.1:8080", "at '/events/url'"),
    ] {
        let err = t.render_error(&["--set", set]);
        assert!(err.contains(message), "--set {set}: {err}");
    }
}

#[test]
fn inconsistent_values_fail_with_a_message() {
    let Some(t) = tools("inconsistent_values") else {
        return;
    };
    let cases: [(&[&str], &str); 12] = [
        (
            &["--set", "sidecar.mode=sidecarless"],
            "at '/sidecar/mode': value must be one of 'native', 'classic'",
        ),
        (
            &["--kube-version", "1.28.0"],
            "needs Kubernetes >= 1.29 (native sidecars)",
        ),
        (
            &["--kube-version", "1.28.0", "--set", "sidecar.mode=classic"],
            "set sidecar.preStop.type=exec",
        ),
        (
            &["--set", "sidecar.terminationGracePeriodSeconds=25"],
            "must be larger than sidecar.drainSeconds + shutdownGraceSecs (25)",
        ),
        (
            &["--set", "demo.replicaCount=3"],
            "demo.replicaCount=3 needs the PostgreSQL ledger that every replica shares: set \
             ledger.postgres.enabled=true and ledger.postgres.existingSecret=",
        ),
        (
            &[
                "--set",
                "ledger.persistence.enabled=true,demo.replicaCount=2",
            ],
            "demo.replicaCount=2 needs the PostgreSQL ledger",
        ),
        (
            &[
                "--set",
                "ledger.postgres.enabled=true,ledger.postgres.existingSecret=pg",
                "--set",
                "ledger.persistence.enabled=true,demo.replicaCount=2",
            ],
            "set ledger.persistence.enabled=false (an emptyDir per pod)",
        ),
        (
            &["--set", "ledger.postgres.enabled=true"],
            "ledger.postgres.enabled needs ledger.postgres.existingSecret",
        ),
        (
            &[
                "--set",
                "ledger.postgres.enabled=true,ledger.postgres.existingSecret=pg",
                "--set",
                "ledger.postgres.ca.existingSecret=a,ledger.postgres.ca.existingConfigMap=b",
            ],
            "set one of ledger.postgres.ca.existingSecret and ledger.postgres.ca.existingConfigMap",
        ),
        (
            &["--set", "rateLimits.redis.enabled=true"],
            "rateLimits.redis.enabled needs rateLimits.redis.existingSecret",
        ),
        (
            &[
                "--set",
                "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1",
            ],
            "needs exactly one of podDisruptionBudget.minAvailable and \
             podDisruptionBudget.maxUnavailable",
        ),
        (&["--set", "rules="], "set either rules"),
    ];
    for (args, message) in cases {
        let err = t.render_error(args);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // Older clusters: classic mode with an exec preStop renders.
    let old = parse(&t.render(&[
        "--kube-version",
        "1.28.0",
        "--set",
        "sidecar.mode=classic,sidecar.preStop.type=exec",
    ]));
    let spec = &one(&old, "Deployment")["spec"]["template"]["spec"];
    assert!(named(&spec["containers"], "payroute").is_some());
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The PrometheusRule's `spec` rendered with the default values.
fn rendered_rule_spec(t: &Tools) -> Value {
    let manifest = t.render(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]);
    one(&parse(&manifest), "PrometheusRule")["spec"].clone()
}

fn alerting_rules(spec: &Value) -> Vec<&Value> {
    spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn every_alert_has_a_runbook_url_to_its_runbook_section() {
    let Some(t) = tools("runbook_urls") else {
        return;
    };
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).unwrap();
    let sections: Vec<&str> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let base = "https://runbooks.example.org/payroute.md";
    for (spec, base) in [
        (
            rendered_rule_spec(&t),
            "https://git.example.com/payments/payroute/blob/main/docs/runbook.md",
        ),
        (
            one(
                &parse(&t.render(&[
                    "--set",
                    &format!("metrics.prometheusRule.enabled=true,metrics.prometheusRule.runbookUrl={base}"),
                    "--api-versions",
                    "monitoring.coreos.com/v1",
                ])),
                "PrometheusRule",
            )["spec"]
                .clone(),
            base,
        ),
    ] {
        let alerts = alerting_rules(&spec);
        assert!(alerts.len() >= 6);
        let names: Vec<&str> = alerts.iter().map(|a| a["alert"].as_str().unwrap()).collect();
        for a in &alerts {
            let name = a["alert"].as_str().unwrap();
            assert_eq!(
                a["annotations"]["runbook_url"],
                format!("{base}#{}", name.to_lowercase()),
                "{name}"
            );
            assert!(sections.contains(&name), "docs/runbook.md has no section {name}");
        }
        assert_eq!(sections, names, "one runbook section per alert, in order");
    }
}

#[test]
fn plain_rules_file_is_the_prometheus_rule_and_passes_promtool() {
    let Some(t) = tools("plain_rules") else {
        return;
    };
    let plain_path = repo().join("deploy/prometheus/payroute-rules.yaml");
    let plain: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&plain_path).unwrap()).unwrap();
    let spec = rendered_rule_spec(&t);
    assert!(
        plain == spec,
        "deploy/prometheus/payroute-rules.yaml differs from the PrometheusRule rendered with the \
         default values; regenerate it (see its header). Expected groups:\n{}",
        serde_json::to_string_pretty(&spec).unwrap()
    );
    // The scrape job it expects: job "payroute" on the chart's admin port name.
    let scrape: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("deploy/prometheus/scrape-config.yaml")).unwrap(),
    )
    .unwrap();
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["job_name"], "payroute");
    assert_eq!(job["relabel_configs"][0]["regex"], "payroute-admin");
    assert_eq!(job["relabel_configs"][0]["action"], "keep");
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    assert_eq!(values["metrics"]["job"], "payroute");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&plain_path, dir.path().join("rules.yaml")).unwrap();
    t.check_and_test_rules(" (plain file)", &plain_path, dir.path());
}

/// values.schema.json: a typo in a key or a value outside its set fails `helm template` and
/// `helm lint` before anything renders; every values set this repository ships passes.
#[test]
fn values_schema_rejects_typos_and_wrong_values() {
    let Some(t) = tools("values_schema") else {
        return;
    };
    let cases: [(&str, &str); 15] = [
        (
            "sidecar.moed=classic",
            "at '/sidecar': additional properties 'moed' not allowed",
        ),
        (
            "notifyBaseURL=https://pay.example.com",
            "additional properties 'notifyBaseURL' not allowed",
        ),
        (
            "metrics.prometheusRule.enable=true",
            "at '/metrics/prometheusRule': additional properties 'enable' not allowed",
        ),
        (
            "sidecar.preStop.type=sleeep",
            "at '/sidecar/preStop/type': value must be one of 'sleep', 'exec', 'none'",
        ),
        (
            "log.format=xml",
            "at '/log/format': value must be one of 'json', 'text'",
        ),
        ("ports.admin=70000", "at '/ports/admin'"),
        ("service.type=Ingress", "at '/service/type'"),
        (
            "ledger.persistence.enabled=yes",
            "at '/ledger/persistence/enabled'",
        ),
        (
            "metrics.prometheusRule.channelErrorRatio=5",
            "at '/metrics/prometheusRule/channelErrorRatio'",
        ),
        ("keys.mountPath=etc/keys", "at '/keys/mountPath'"),
        (
            "ledger.postgres.existingsecret=payroute-ledger",
            "at '/ledger/postgres': additional properties 'existingsecret' not allowed",
        ),
        (
            "ledger.postgres.password.file=/run/pw",
            "at '/ledger/postgres/password': additional properties 'file' not allowed",
        ),
        (
            "ledger.postgres.maxConnections=0",
            "at '/ledger/postgres/maxConnections'",
        ),
        (
            "rateLimits.redis.prefix=shop1:",
            "at '/rateLimits/redis': additional properties 'prefix' not allowed",
        ),
        (
            "podDisruptionBudget.maxUnavailable=one",
            "at '/podDisruptionBudget/maxUnavailable'",
        ),
    ];
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    for (set, message) in cases {
        let err = t.render_error(&["--set", set]);
        assert!(err.contains(message), "--set {set}: {err}");
        let lint = t.helm(&["lint", "--strict", chart, "--set", set]);
        assert!(!lint.status.success(), "helm lint --set {set} passed");
        assert!(
            text(&lint).contains(message),
            "lint --set {set}: {}",
            text(&lint)
        );
    }
    // The same typo in a values file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "sidecar:\n  mode: native\n  moed: classic\n").unwrap();
    let err = t.render_error(&["-f", bad.to_str().unwrap()]);
    assert!(
        err.contains("additional properties 'moed' not allowed"),
        "{err}"
    );
    // Good values: the defaults, both ci files (lint_with_default_and_ci_values), and every
    // combination the other tests render; here the remaining documented ones.
    for set in [
        "sidecar.terminationGracePeriodSeconds=60",
        "sandbox=true,keys.existingSecret=",
        "image.tag=1",
        "ledger.emptyDir.sizeLimit=",
        "metrics.prometheusRule.runbookUrl=https://runbooks.example.org/payroute.md",
        "rateLimits.replicas=4",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=25%",
    ] {
        t.render(&["--set", set]);
    }
}

/// The shell commands of README's *Deploy on Kubernetes* install block (continuations joined,
/// comments dropped).
fn readme_install_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find("\n## Deploy on Kubernetes").expect("section")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let block = section
        .split("```sh\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.contains("create secret generic"))
        .expect("an sh block that creates the Secret");
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Every `{ file: … }` and `{ env: … }` key reference below `v`.
fn key_refs(v: &Value, files: &mut Vec<String>, envs: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some(f) = m.get("file").and_then(Value::as_str) {
                    files.push(f.to_string());
                }
                if let Some(e) = m.get("env").and_then(Value::as_str) {
                    envs.push(e.to_string());
                }
            }
            m.values().for_each(|v| key_refs(v, files, envs));
        }
        Value::Array(a) => a.iter().for_each(|v| key_refs(v, files, envs)),
        _ => {}
    }
}

/// README's install, followed literally from a copy of the repository (with the sandbox's TEST
/// keys standing in for the user's `./keys/*`): the rendered pod mounts a Secret holding every
/// key file the sample routes.yaml names, sets every env key from it, and `payroute check` passes
/// on the pod's files rebuilt from the rendered manifests. (No cluster here: `helm template`
/// stands in for `helm install`, and the Secret is built from the `kubectl` command's arguments.)
#[test]
fn readme_install_gives_payroute_every_key_it_needs() {
    let Some(t) = tools("readme_install") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    std::fs::copy(repo().join("routes.yaml"), cwd.join("routes.yaml")).unwrap();
    std::os::unix::fs::symlink(repo().join("charts"), cwd.join("charts")).unwrap();
    std::fs::create_dir(cwd.join("keys")).unwrap();

    let commands = readme_install_commands();
    // kubectl create secret generic NAME --from-file=KEY=PATH …
    let secret_cmd = commands
        .iter()
        .find(|c| c.starts_with("kubectl ") && c.contains(" create secret generic "))
        .expect("the kubectl create secret command");
    let words: Vec<&str> = secret_cmd.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "generic").unwrap();
    let secret_name = words[at + 1];
    let mut secret = std::collections::BTreeMap::new();
    for w in &words[at + 2..] {
        if let Some(spec) = w.strip_prefix("--from-file=") {
            let (key, path) = spec.split_once('=').unwrap_or((spec, spec));
            let file = Path::new(path).file_name().unwrap();
            // The user's key file: the sandbox's TEST key of the same name stands in for it.
            let stand_in = repo().join("sandbox/keys").join(file);
            assert!(
                stand_in.is_file(),
                "no sandbox key {file:?} to stand in for {path}"
            );
            std::fs::copy(&stand_in, cwd.join(path)).unwrap();
            secret.insert(key.to_string(), std::fs::read(cwd.join(path)).unwrap());
        }
    }
    assert!(!secret.is_empty(), "{secret_cmd}");
    // The other commands in order: shell steps run as written, helm install is rendered.
    let mut manifest = None;
    for c in &commands {
        if c.starts_with("kubectl ") {
            continue;
        }
        if let Some(rest) = c.strip_prefix("helm install ") {
            let mut args = vec!["template"];
            args.extend(rest.split_whitespace());
            let h = t.home.path();
            let out = Command::new(&t.helm)
                .args(&args)
                .current_dir(cwd)
                .env("HELM_CONFIG_HOME", h.join("config"))
                .env("HELM_CACHE_HOME", h.join("cache"))
                .env("HELM_DATA_HOME", h.join("data"))
                .output()
                .expect("run helm");
            assert!(out.status.success(), "helm {args:?}:\n{}", text(&out));
            manifest = Some(String::from_utf8(out.stdout).unwrap());
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", c])
            .current_dir(cwd)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{c}:\n{}", text(&out));
    }
    let manifest = manifest.expect("a helm install command");
    t.validate(&manifest, "readme-install");
    let docs = parse(&manifest);

    // The pod's files: the Secret and the ConfigMap where the payroute container mounts them.
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let payroute = spec["initContainers"]
        .as_array()
        .into_iter()
        .chain(spec["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "payroute")
        .expect("payroute container");
    let root = tempfile::tempdir().unwrap();
    let mut secret_mounts = Vec::new();
    for m in payroute["volumeMounts"].as_array().unwrap() {
        let vol = named(&spec["volumes"], m["name"].as_str().unwrap()).expect("volume");
        let dir = root
            .path()
            .join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(s) = vol.get("secret") {
            assert_eq!(
                s["secretName"], secret_name,
                "the README's Secret is mounted"
            );
            assert!(s.get("items").is_none());
            for (k, v) in &secret {
                std::fs::write(dir.join(k), v).unwrap();
            }
            secret_mounts.push(m["mountPath"].as_str().unwrap().to_string());
        } else if let Some(cm) = vol.get("configMap") {
            let rendered = of_kind(&docs, "ConfigMap")
                .into_iter()
                .find(|d| d["metadata"]["name"] == cm["name"])
                .expect("the mounted ConfigMap is rendered");
            for (k, v) in rendered["data"].as_object().unwrap() {
                std::fs::write(dir.join(k), v.as_str().unwrap()).unwrap();
            }
        }
    }
    let config_path = payroute["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .and_then(Value::as_str)
        .expect("--config");
    let local_config = root.path().join(config_path.trim_start_matches('/'));
    let routes_text = std::fs::read_to_string(&local_config).expect("routes.yaml in the pod");
    let routes: Value = serde_saphyr::from_str(&routes_text).unwrap();
    let (mut files, mut envs) = (Vec::new(), Vec::new());
    key_refs(&routes, &mut files, &mut envs);
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let mount = secret_mounts
            .iter()
            .find(|m| f.starts_with(&format!("{m}/")))
            .unwrap_or_else(|| panic!("{f} is not under the Secret mount {secret_mounts:?}"));
        let key = &f[mount.len() + 1..];
        assert!(
            secret.contains_key(key),
            "the Secret has no key {key} for {f}"
        );
    }
    // Env keys: set on the container, from the README's Secret.
    let mut env = Vec::new();
    for e in payroute["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        if let Some(v) = e["value"].as_str() {
            env.push((name, v.to_string()));
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            assert_eq!(r["name"], secret_name, "{name}");
            let v = secret
                .get(r["key"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{name}: the Secret has no key {}", r["key"]));
            env.push((name, String::from_utf8_lossy(v).into_owned()));
        }
    }
    for e in &envs {
        assert!(env.iter().any(|(n, _)| n == e), "{{ env: {e} }} is not set");
    }

    // payroute check on the pod's files (absolute paths moved under the temp root).
    let prefix = format!("{{ file: {}/", root.path().display());
    std::fs::write(&local_config, routes_text.replace("{ file: /", &prefix)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_payroute"))
        .arg("check")
        .arg(&local_config)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("payroute check");
    assert!(out.status.success(), "payroute check:\n{}", text(&out));
}

/// payroute's container in a rendered Deployment, in either mode.
fn payroute_container(spec: &Value) -> &Value {
    spec["initContainers"]
        .as_array()
        .into_iter()
        .chain(spec["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "payroute")
        .expect("payroute container")
}

/// The `secretKeyRef` of env `name`, which must have no plain value.
fn secret_env<'a>(container: &'a Value, name: &str) -> &'a Value {
    let e = named(&container["env"], name).unwrap_or_else(|| panic!("env {name}"));
    assert!(e.get("value").is_none(), "{name} is not a plain value");
    &e["valueFrom"]["secretKeyRef"]
}

/// Values of several replicas on the PostgreSQL ledger, with every option set.
const REPLICAS_SET: [&str; 5] = [
    "demo.replicaCount=3,ledger.postgres.enabled=true,ledger.postgres.existingSecret=payroute-ledger",
    "ledger.postgres.password.existingSecret=payroute-ledger-pw,ledger.postgres.maxConnections=8",
    "rateLimits.redis.enabled=true,rateLimits.redis.existingSecret=payroute-redis",
    "rateLimits.redis.keyPrefix=shop1:",
    "podDisruptionBudget.enabled=true",
];

/// Several replicas on the PostgreSQL ledger: the URL from its Secret through a secretKeyRef, the
/// password and CA files mounted and passed as flags, the replica count and the Redis URL given
/// to payroute, the data directory an emptyDir, and a PodDisruptionBudget over the same pods as
/// the notify Service; every object valid for Kubernetes, every setting one payroute reads.
#[test]
fn several_replicas_share_the_postgres_ledger() {
    let Some(t) = tools("several_replicas") else {
        return;
    };
    let help = Command::new(env!("CARGO_BIN_EXE_payroute"))
        .args(["serve", "--help"])
        .output()
        .expect("payroute serve --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // The CA from a Secret in native mode, from a ConfigMap in classic mode.
    for (mode, ca, ca_kind) in [
        (
            "native",
            "ledger.postgres.ca.existingSecret=db-ca",
            "secret",
        ),
        (
            "classic",
            "ledger.postgres.ca.existingConfigMap=db-ca",
            "configMap",
        ),
    ] {
        let mut args = Vec::new();
        for set in REPLICAS_SET.iter().copied().chain([ca]) {
            args.extend(["--set", set]);
        }
        let mode_set = format!("sidecar.mode={mode}");
        args.extend(["--set", &mode_set]);
        let manifest = t.render(&args);
        t.validate(&manifest, &format!("replicas-{mode}"));
        let docs = parse(&manifest);
        let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["PodDisruptionBudget", "ConfigMap", "Service", "Deployment"],
            "no PersistentVolumeClaim"
        );
        let deploy = one(&docs, "Deployment");
        assert_eq!(deploy["spec"]["replicas"], 3);
        assert!(deploy["spec"].get("strategy").is_none(), "rolling updates");
        let pod = &deploy["spec"]["template"];
        let spec = &pod["spec"];
        let c = payroute_container(spec);

        let url = secret_env(c, "PAYROUTE_LEDGER_URL");
        assert_eq!(*url, json!({"name": "payroute-ledger", "key": "url"}));
        assert!(!manifest.contains("postgres://"), "no URL in the manifest");
        assert_eq!(env(c, "PAYROUTE_REPLICAS"), Some(&json!("3")));
        let redis = secret_env(c, "PAYROUTE_REDIS_URL");
        assert_eq!(*redis, json!({"name": "payroute-redis", "key": "url"}));
        assert_eq!(env(c, "PAYROUTE_REDIS_KEY_PREFIX"), Some(&json!("shop1:")));
        assert_eq!(
            env(c, "PAYROUTE_DATA_DIR"),
            Some(&json!("/var/lib/payroute"))
        );
        assert_eq!(
            c["args"],
            json!([
                "serve",
                "--config",
                "/etc/payroute/rules/routes.yaml",
                "--ledger-max-connections",
                "8",
                "--ledger-password-file",
                "/etc/payroute/ledger-password/password",
                "--ledger-ca-file",
                "/etc/payroute/ledger-ca/ca.crt",
            ])
        );
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            if name != "PAYROUTE_LOG" {
                assert!(help.contains(&format!("env: {name}")), "{name} unknown");
            }
        }
        for flag in c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
        {
            if flag.starts_with("--") {
                assert!(help.contains(flag), "{flag} unknown to payroute serve");
            }
        }

        let mounts = &c["volumeMounts"];
        let pw = named(mounts, "payroute-ledger-password").expect("password mount");
        assert_eq!(pw["mountPath"], "/etc/payroute/ledger-password");
        assert_eq!(pw["readOnly"], true);
        let ca_mount = named(mounts, "payroute-ledger-ca").expect("CA mount");
        assert_eq!(ca_mount["mountPath"], "/etc/payroute/ledger-ca");
        assert_eq!(ca_mount["readOnly"], true);
        let vols = &spec["volumes"];
        assert_eq!(
            names(vols),
            [
                "payroute-rules",
                "payroute-keys",
                "payroute-ledger-password",
                "payroute-ledger-ca",
                "payroute-ledger",
                "payroute-tmp"
            ]
        );
        let pw = &named(vols, "payroute-ledger-password").unwrap()["secret"];
        assert_eq!(pw["secretName"], "payroute-ledger-pw");
        assert_eq!(pw["defaultMode"], 0o440);
        assert_eq!(
            pw["items"],
            json!([{"key": "password", "path": "password"}])
        );
        let ca_vol = &named(vols, "payroute-ledger-ca").unwrap()[ca_kind];
        let ca_name = if ca_kind == "secret" {
            &ca_vol["secretName"]
        } else {
            &ca_vol["name"]
        };
        assert_eq!(*ca_name, "db-ca");
        assert_eq!(ca_vol["defaultMode"], 0o444);
        assert_eq!(
            ca_vol["items"],
            json!([{"key": "ca.crt", "path": "ca.crt"}])
        );
        let ledger = named(vols, "payroute-ledger").unwrap();
        assert_eq!(ledger["emptyDir"]["sizeLimit"], "1Gi");
        assert_eq!(sub_paths(spec), 0, "no subPath mounts");

        let pdb = one(&docs, "PodDisruptionBudget");
        assert_eq!(pdb["apiVersion"], "policy/v1");
        assert_eq!(pdb["metadata"]["name"], FULLNAME);
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert!(pdb["spec"].get("minAvailable").is_none());
        let selector = &pdb["spec"]["selector"]["matchLabels"];
        assert_eq!(*selector, json!({"payroute/sidecar": FULLNAME}));
        assert_eq!(*selector, one(&docs, "Service")["spec"]["selector"]);
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(pod["metadata"]["labels"][k], *v, "the pods carry {k}");
        }
    }

    // Overrides: the replica count payroute is told, minAvailable as a percentage; no password
    // or CA: no flags, no volumes.
    let docs = parse(&t.render(&[
        "--set",
        REPLICAS_SET[0],
        "--set",
        "rateLimits.replicas=6,podDisruptionBudget.enabled=true",
        "--set",
        "podDisruptionBudget.maxUnavailable=,podDisruptionBudget.minAvailable=50%",
    ]));
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let c = payroute_container(spec);
    assert_eq!(env(c, "PAYROUTE_REPLICAS"), Some(&json!("6")));
    assert!(named(&c["env"], "PAYROUTE_REDIS_URL").is_none());
    assert!(named(&c["env"], "PAYROUTE_REDIS_KEY_PREFIX").is_none());
    assert_eq!(
        c["args"],
        json!([
            "serve",
            "--config",
            "/etc/payroute/rules/routes.yaml",
            "--ledger-max-connections",
            "16"
        ])
    );
    assert!(named(&spec["volumes"], "payroute-ledger-password").is_none());
    assert!(named(&spec["volumes"], "payroute-ledger-ca").is_none());
    let pdb = &one(&docs, "PodDisruptionBudget")["spec"];
    assert_eq!(pdb["minAvailable"], "50%");
    assert!(pdb.get("maxUnavailable").is_none());

    // Defaults: one replica, the embedded ledger, no PodDisruptionBudget.
    let docs = parse(&t.render(&[]));
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty());
    let c = payroute_container(&one(&docs, "Deployment")["spec"]["template"]["spec"]);
    assert!(named(&c["env"], "PAYROUTE_LEDGER_URL").is_none());
    assert_eq!(env(c, "PAYROUTE_REPLICAS"), Some(&json!("1")));
    // A password Secret without the PostgreSQL ledger is not mounted.
    let docs = parse(&t.render(&[
        "--set",
        "ledger.postgres.password.existingSecret=payroute-ledger-pw",
    ]));
    let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert!(named(&spec["volumes"], "payroute-ledger-password").is_none());
    assert_eq!(
        payroute_container(spec)["args"].as_array().unwrap().len(),
        3
    );
}

/// The `helm install` of an sh block in `section` of `readme` (continuations joined), and the
/// block's `kubectl create secret generic` commands as (Secret name, whole command).
fn readme_helm_install(readme: &str, section: &str) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(repo().join(readme)).unwrap();
    let at = text
        .find(section)
        .unwrap_or_else(|| panic!("{readme}: {section}"));
    let block = text[at..].split("```sh\n").nth(1).expect("an sh block");
    let block = block[..block.find("```").unwrap()].replace("\\\n", " ");
    let mut install = Vec::new();
    let mut secrets = Vec::new();
    for line in block.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("helm install ") {
            install = rest.split_whitespace().map(String::from).collect();
        } else if let Some(at) = words.iter().position(|w| *w == "generic") {
            secrets.push((words[at + 1].to_string(), line.to_string()));
        }
    }
    assert!(
        !install.is_empty(),
        "{readme}: no helm install in {section}"
    );
    (install, secrets)
}

/// The several-replicas install of both READMEs renders and gives payroute the shared ledger from
/// the Secret they create.
#[test]
fn readme_several_replicas_install_renders() {
    let Some(t) = tools("readme_several_replicas") else {
        return;
    };
    for (readme, section) in [
        ("README.md", "\n### With the Helm chart"),
        ("charts/payroute/README.md", "\n## Several replicas"),
    ] {
        let (install, secrets) = readme_helm_install(readme, section);
        assert_eq!(install[1], "charts/payroute", "{readme}");
        let chart = chart_dir();
        let args: Vec<&str> = install[2..].iter().map(String::as_str).collect();
        let manifest = t.render_chart(&chart, &args);
        t.validate(&manifest, "readme-replicas");
        let docs = parse(&manifest);
        let deploy = one(&docs, "Deployment");
        assert!(deploy["spec"]["replicas"].as_i64().unwrap() > 1, "{readme}");
        let c = payroute_container(&deploy["spec"]["template"]["spec"]);
        let url = secret_env(c, "PAYROUTE_LEDGER_URL");
        let key = url["key"].as_str().unwrap();
        assert!(
            secrets
                .iter()
                .any(|(name, cmd)| url["name"] == name.as_str() && cmd.contains(&format!("={key}="))),
            "{readme}: the ledger URL's Secret and key {url} are ones the block creates ({secrets:?})"
        );
        assert_eq!(
            env(c, "PAYROUTE_REPLICAS"),
            Some(&json!(deploy["spec"]["replicas"].to_string()))
        );
        assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1, "{readme}");
    }
}
