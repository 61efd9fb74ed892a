//! Compiles a C program against the real uapi header and compares sizes, offsets and ioctl
//! numbers with the Rust mirror.
use super::*;
use std::mem::{offset_of, size_of};
use std::process::Command;

fn c_layout() -> Vec<(String, u64)> {
    let header_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../kmod/include/uapi");
    let dir = std::env::temp_dir().join(format!("idgate-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"idgate.h\"\nint main(void){\n");
    for (name, expr) in probes() {
        src += &format!("printf(\"{name} %llu\\n\", (unsigned long long)({expr}));\n");
    }
    src += "return 0;}\n";
    std::fs::write(dir.join("layout.c"), src).unwrap();
    let out = Command::new("cc")
        .args(["-Wall", "-Werror", "-I", header_dir, "-o"])
        .arg(dir.join("layout"))
        .arg(dir.join("layout.c"))
        .output()
        .expect("cc is needed to check the uapi layout");
    assert!(out.status.success(), "compiling against idgate.h: {}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(dir.join("layout")).output().unwrap();
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

macro_rules! fields {
    ($v:ident, $cty:literal, $rty:ty, [$($f:ident),*]) => {{
        $v.push((format!("sizeof_{}", $cty), format!("sizeof(struct {})", $cty), size_of::<$rty>() as u64));
        $( $v.push((format!("{}.{}", $cty, stringify!($f)), format!("offsetof(struct {}, {})", $cty, stringify!($f)), offset_of!($rty, $f) as u64)); )*
    }};
}

fn table() -> Vec<(String, String, u64)> {
    let mut v = Vec::new();
    fields!(v, "idgate_version", Version, [api_version, reserved, module_version]);
    fields!(v, "idgate_rule", Rule, [family, prefix_len, port_min, port_max, pad, addr]);
    fields!(v, "idgate_config", Config, [mark, mark_mask, proxy_tgid, rule_count, flags, rule_room, rules]);
    fields!(
        v,
        "idgate_lookup",
        Lookup,
        [
            family,
            flags,
            src_port,
            dst_port,
            pad0,
            src_addr,
            dst_addr,
            tgid,
            pid,
            uid,
            gid,
            result_flags,
            pad1,
            start_time_ns,
            cgroup_id,
            record_time_ns,
            exe_dev,
            exe_ino,
            comm,
            exe,
            cgroup
        ]
    );
    fields!(
        v,
        "idgate_stats",
        Stats,
        [entries, peak_entries, max_entries, recorded, lookups, hits, misses, evictions, expired, flushed, dropped, skipped_proxy, reserved]
    );
    for (name, value) in [
        ("IDGATE_IOC_VERSION", IOC_VERSION),
        ("IDGATE_IOC_CONFIG", IOC_CONFIG),
        ("IDGATE_IOC_GET_CONFIG", IOC_GET_CONFIG),
        ("IDGATE_IOC_LOOKUP", IOC_LOOKUP),
        ("IDGATE_IOC_STATS", IOC_STATS),
        ("IDGATE_API_VERSION", API_VERSION as u64),
        ("IDGATE_MAX_RULES", MAX_RULES as u64),
        ("IDGATE_PATH_LEN", PATH_LEN as u64),
        ("IDGATE_RESULT_EXE_TRUNC", RESULT_EXE_TRUNC as u64),
        ("IDGATE_RESULT_CG_TRUNC", RESULT_CG_TRUNC as u64),
        ("IDGATE_RESULT_EXE_ID", RESULT_EXE_ID as u64),
    ] {
        v.push((name.to_string(), name.to_string(), value));
    }
    v
}

fn probes() -> Vec<(String, String)> {
    table().into_iter().map(|(n, e, _)| (n, e)).collect()
}

#[test]
fn rust_mirror_matches_c_header() {
    let c: std::collections::HashMap<String, u64> = c_layout().into_iter().collect();
    for (name, _, rust) in table() {
        assert_eq!(c[&name], rust, "{name}: C says {}, Rust says {rust}", c[&name]);
    }
}
