//! Builds the C++ shim of the `c10d` feature (csrc/c10d.cpp) against an installed libtorch.
//!
//! libtorch is found as torch-sys finds it: `LIBTORCH` (a folder with include/ and lib/, with
//! `LIBTORCH_INCLUDE`/`LIBTORCH_LIB` overriding either and `LIBTORCH_CXX11_ABI=0` for the old
//! ABI), else, with `LIBTORCH_USE_PYTORCH=1`, the torch package of `python` (or `python3`, or
//! `PYTHON_SYS_EXECUTABLE`). ProcessGroupNCCL is compiled in as well, and `cfg(dissect_nccl)`
//! set, when libtorch_cuda is there and the NCCL and CUDA headers are found (see `nccl`);
//! `DISSECT_NCCL=0` turns that off.
//!
//! Without the feature this script does nothing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dissect_nccl)");
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "c10d")]
    if std::env::var_os("CARGO_FEATURE_C10D").is_some() {
        c10d::build();
    }
}

#[cfg(feature = "c10d")]
mod c10d {
    use std::env;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const ENV_VARS: [&str; 10] = [
        "LIBTORCH",
        "LIBTORCH_INCLUDE",
        "LIBTORCH_LIB",
        "LIBTORCH_CXX11_ABI",
        "LIBTORCH_USE_PYTORCH",
        "PYTHON_SYS_EXECUTABLE",
        "NCCL_INCLUDE",
        "CUDA_INCLUDE",
        "CUDA_HOME",
        "DISSECT_NCCL",
    ];

    /// Where a libtorch's headers and libraries are, and how it was compiled.
    struct Torch {
        includes: Vec<PathBuf>,
        lib_dir: PathBuf,
        cxx11_abi: bool,
        /// The Python site-packages holding the torch package, whose `nvidia/` packages carry
        /// NCCL's and CUDA's headers; `None` for a standalone libtorch.
        site_packages: Option<PathBuf>,
    }

    pub fn build() {
        for var in ENV_VARS {
            println!("cargo::rerun-if-env-changed={var}");
        }
        println!("cargo::rerun-if-changed=csrc");
        let torch = find_torch();
        let nccl_includes = nccl::includes(&torch);
        compile(&torch, nccl_includes.as_deref());
        link(&torch, nccl_includes.is_some());
    }

    fn find_torch() -> Torch {
        if let Some(root) = env::var_os("LIBTORCH").map(PathBuf::from) {
            return from_libtorch_dir(&root);
        }
        if env::var("LIBTORCH_USE_PYTORCH").is_ok_and(|v| !v.is_empty() && v != "0") {
            return from_python();
        }
        panic!(
            "dissect-dist's `c10d` feature needs libtorch: set LIBTORCH to a libtorch folder (with include/ \
             and lib/), or LIBTORCH_USE_PYTORCH=1 with a `python` on PATH that imports torch (as torch-sys \
             finds it; bench/build_tch.sh sets this up)"
        );
    }

    fn from_libtorch_dir(root: &Path) -> Torch {
        let include = env::var_os("LIBTORCH_INCLUDE").map_or_else(|| root.join("include"), PathBuf::from);
        let lib_dir = env::var_os("LIBTORCH_LIB").map_or_else(|| root.join("lib"), PathBuf::from);
        if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").is_file() {
            panic!(
                "LIBTORCH={} has no torch/csrc/distributed/c10d headers under {}",
                root.display(),
                include.display()
            );
        }
        Torch {
            includes: vec![include.join("torch/csrc/api/include"), include],
            lib_dir,
            // torch-sys's default: every libtorch built since PyTorch 2.7 uses the new ABI.
            cxx11_abi: env::var("LIBTORCH_CXX11_ABI").map_or(true, |v| v != "0"),
            site_packages: None,
        }
    }

    /// Asks Python's torch where it is. Each answer is one tagged line, so that whatever torch
    /// prints on import (warnings) is ignored.
    const PROBE: &str = r#"
import os, torch
print("ABI", int(torch._C._GLIBCXX_USE_CXX11_ABI))
root = os.path.dirname(os.path.abspath(torch.__file__))
print("ROOT", root)
try:
    from torch.utils import cpp_extension
    includes, libs = cpp_extension.include_paths(), cpp_extension.library_paths()
except Exception:
    includes = [os.path.join(root, "include"), os.path.join(root, "include", "torch", "csrc", "api", "include")]
    libs = [os.path.join(root, "lib")]
for p in includes:
    print("INCLUDE", p)
print("LIB", libs[0])
"#;

    fn from_python() -> Torch {
        let candidates = match env::var("PYTHON_SYS_EXECUTABLE") {
            Ok(python) => vec![python],
            Err(_) => vec!["python".to_string(), "python3".to_string()],
        };
        let mut failures = Vec::new();
        for python in &candidates {
            match Command::new(python).args(["-c", PROBE]).output() {
                Ok(out) if out.status.success() => return parse_probe(&String::from_utf8_lossy(&out.stdout)),
                Ok(out) => failures.push(format!("`{python}`: {}", String::from_utf8_lossy(&out.stderr).trim())),
                Err(e) => failures.push(format!("`{python}`: {e}")),
            }
        }
        panic!(
            "LIBTORCH_USE_PYTORCH is set, but no Python with torch answered ({}); put a Python that imports \
             torch first on PATH, or set LIBTORCH",
            failures.join("; ")
        );
    }

    fn parse_probe(stdout: &str) -> Torch {
        let (mut includes, mut lib_dir, mut abi, mut root) = (Vec::new(), None, None, None);
        for line in stdout.lines() {
            match line.split_once(' ') {
                Some(("ABI", v)) => abi = Some(v.trim() == "1"),
                Some(("ROOT", v)) => root = Some(PathBuf::from(v)),
                Some(("INCLUDE", v)) => includes.push(PathBuf::from(v)),
                Some(("LIB", v)) => lib_dir = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        match (abi, lib_dir, root) {
            (Some(cxx11_abi), Some(lib_dir), Some(root)) if !includes.is_empty() => {
                Torch { includes, lib_dir, cxx11_abi, site_packages: root.parent().map(Path::to_path_buf) }
            }
            _ => panic!("could not read torch's paths from Python's answer:\n{stdout}"),
        }
    }

    fn compile(torch: &Torch, nccl_includes: Option<&[PathBuf]>) {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .file("csrc/c10d.cpp")
            .includes(&torch.includes)
            .define("_GLIBCXX_USE_CXX11_ABI", if torch.cxx11_abi { "1" } else { "0" })
            // The macro torch's own build defines: ProcessGroupGloo.hpp is empty without it.
            .define("USE_C10D_GLOO", None)
            // torch's headers are not warning-clean (unused parameters, deprecations, a
            // hardware_destructive_interference_size in a struct layout): not ours to fix.
            .warnings(false)
            .extra_warnings(false)
            .flag_if_supported("-Wno-deprecated-declarations")
            .flag_if_supported("-Wno-interference-size")
            .flag_if_supported("-Wno-unused-parameter");
        // PyPI's torch wheels ship c10d's headers without Gloo's: then our declarations of the
        // few Gloo types ProcessGroupGloo.hpp names stand in (csrc/gloo-decls explains why
        // that is sound).
        if !torch.includes.iter().any(|dir| dir.join("gloo/context.h").is_file()) {
            build.include("csrc/gloo-decls");
        }
        if let Some(dirs) = nccl_includes {
            // USE_C10D_NCCL is the macro ProcessGroupNCCL.hpp is guarded by; DISSECT_NCCL ours.
            build.define("USE_C10D_NCCL", None).define("DISSECT_NCCL", None).includes(dirs);
        }
        build.compile("dissect_c10d");
    }

    fn link(torch: &Torch, nccl: bool) {
        let lib_dir = torch.lib_dir.display();
        println!("cargo::rustc-link-search=native={lib_dir}");
        if nccl {
            // libtorch_cuda must be loaded for the CUDA copies' kernels to be registered. The
            // linker's --as-needed keeps it: the shim's object calls ProcessGroupNCCL, defined
            // there (and only a binary that links that object can ask for a CUDA copy).
            println!("cargo::rustc-link-lib=dylib=torch_cuda");
            println!("cargo::rustc-link-lib=dylib=c10_cuda");
            println!("cargo::rustc-cfg=dissect_nccl");
        }
        println!("cargo::rustc-link-lib=dylib=torch_cpu");
        println!("cargo::rustc-link-lib=dylib=c10");
        // For this package's own tests and examples; binaries of other crates set their own
        // run-time search path (or LD_LIBRARY_PATH) to torch's lib folder.
        println!("cargo::rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }

    mod nccl {
        use super::Torch;
        use std::env;
        use std::path::PathBuf;

        /// Header files the NCCL shim needs, each with the package that ships it on PyPI.
        const NEEDED: [(&str, &str); 4] = [
            ("nccl.h", "nvidia-nccl-cu13"),
            ("cuda_runtime_api.h", "nvidia-cuda-runtime"),
            ("crt/host_config.h", "nvidia-cuda-crt"),
            ("nv/target", "nvidia-cuda-cccl"),
        ];

        /// The include folders for compiling ProcessGroupNCCL in, or `None` (with a warning
        /// naming what is missing) when libtorch_cuda or a header is not there.
        pub fn includes(torch: &Torch) -> Option<Vec<PathBuf>> {
            if env::var("DISSECT_NCCL").is_ok_and(|v| v == "0") {
                return None;
            }
            if !torch.lib_dir.join("libtorch_cuda.so").is_file() {
                return None;
            }
            let candidates = candidates(torch);
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for (header, package) in NEEDED {
                match candidates.iter().find(|dir| dir.join(header).exists()) {
                    Some(dir) if !found.contains(dir) => found.push(dir.clone()),
                    Some(_) => {}
                    None => missing.push(format!("{header} (PyPI: {package})")),
                }
            }
            if missing.is_empty() {
                return Some(found);
            }
            println!(
                "cargo::warning=dissect-dist: libtorch_cuda is there but NCCL is left out: no {} in {:?} \
                 (set NCCL_INCLUDE/CUDA_INCLUDE, or install those packages beside torch); Gloo only",
                missing.join(", "),
                candidates
            );
            None
        }

        /// Where to look: NCCL_INCLUDE, CUDA_INCLUDE (each a PATH-like list), the nvidia/
        /// packages beside torch (CUDA 13's, then 12's layout), CUDA_HOME/include.
        fn candidates(torch: &Torch) -> Vec<PathBuf> {
            let mut dirs: Vec<PathBuf> = Vec::new();
            for var in ["NCCL_INCLUDE", "CUDA_INCLUDE"] {
                if let Some(list) = env::var_os(var) {
                    dirs.extend(env::split_paths(&list));
                }
            }
            if let Some(site) = &torch.site_packages {
                let nvidia = site.join("nvidia");
                for sub in
                    ["nccl/include", "cu13/include", "cuda_runtime/include", "cuda_nvcc/include", "cuda_cccl/include"]
                {
                    dirs.push(nvidia.join(sub));
                }
            }
            if let Some(home) = env::var_os("CUDA_HOME") {
                dirs.push(PathBuf::from(home).join("include"));
            }
            dirs.retain(|dir| dir.is_dir());
            dirs
        }
    }
}
