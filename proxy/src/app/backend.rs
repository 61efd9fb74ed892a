//! Which identity backend a host uses, and why.
use crate::config::{Config, IdentityBackendChoice};
use crate::identity::{FlowIdentity, ProcfsBackend, WithContainers};
use anyhow::{Context, Result};

/// The identity backend, and why it is the one: an operator must be able to tell a host that
/// fell back to procfs (module absent, one whose API this idgate does not speak, or a kernel
/// outside the module's support window) from one that never had the module. Only an explicit
/// `identity_backend = "kmod"` refuses to start.
pub fn identity_backend(config: &Config) -> Result<(Box<dyn FlowIdentity>, String)> {
    let (backend, why) = host_backend(config)?;
    if config.containers.networks.is_empty() {
        return Ok((backend, why));
    }
    let containers = || ProcfsBackend::with_containers(config.containers.networks.clone()).context("looking into containers' network namespaces");
    if backend.name() == "procfs" {
        return Ok((Box::new(containers()?), why));
    }
    let with = WithContainers { host: backend, containers: containers()? };
    Ok((Box::new(with), format!("{why}; flows from containers ([containers] networks) are found with sock_diag in their network namespaces")))
}

fn host_backend(config: &Config) -> Result<(Box<dyn FlowIdentity>, String)> {
    let device = crate::identity::kmod_device();
    // The module's API first (a device that does not speak it is no module of ours), then the
    // kernel it runs on.
    let open = || -> Result<(crate::identity::KmodBackend, String)> {
        let kmod = crate::identity::KmodBackend::open(&device, &config.outbound, &config.intercept)
            .with_context(|| format!("the kernel module at {} is not usable", device.display()))?;
        let note = crate::identity::kmod_envelope::check_running().map_err(anyhow::Error::msg)?;
        Ok((kmod, note))
    };
    match config.identity_backend {
        IdentityBackendChoice::Procfs => Ok((Box::new(ProcfsBackend::default()), "identity_backend = \"procfs\" in the config".into())),
        IdentityBackendChoice::Kmod => match open() {
            Ok((kmod, note)) => Ok((Box::new(kmod), format!("identity_backend = \"kmod\" in the config; {note}"))),
            Err(e) => Err(e.context("identity_backend = \"kmod\" but the kernel module cannot be trusted")),
        },
        IdentityBackendChoice::Auto if !device.exists() => {
            Ok((Box::new(ProcfsBackend::default()), format!("{} does not exist (idgate.ko is not loaded)", device.display())))
        }
        IdentityBackendChoice::Auto => match open() {
            Ok((kmod, note)) => Ok((Box::new(kmod), format!("{} is usable; {note}", device.display()))),
            Err(e) => {
                let why = format!("{e:#}; falling back to procfs");
                tracing::warn!("{why}");
                Ok((Box::new(ProcfsBackend::default()), why))
            }
        },
    }
}
