//! `--isolate`: keeps the kernel's network receive processing (RPS on the
//! loopback device) and its unbound workqueues off the workers' cores for
//! one run, as docs/OPERATIONS.md recommends for production, and puts
//! every setting back afterwards.

use anyhow::Context;
use std::path::PathBuf;

/// Settings changed for the run; restored on drop.
pub struct Isolation {
    saved: Vec<(PathBuf, String)>,
}

/// The hex CPU mask sysfs expects for `cores`.
fn mask(cores: &[usize]) -> String {
    let mut words = vec![0u32; cores.iter().max().map_or(1, |m| m / 32 + 1)];
    for &c in cores {
        words[c / 32] |= 1 << (c % 32);
    }
    words
        .iter()
        .rev()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Isolation {
    /// Steers RPS of `lo` and the unbound workqueues to `housekeeping`.
    ///
    /// # Errors
    /// A setting that cannot be written (root is needed); nothing stays
    /// changed then.
    pub fn apply(housekeeping: &[usize]) -> anyhow::Result<Isolation> {
        anyhow::ensure!(
            !housekeeping.is_empty(),
            "--isolate needs a core the workers leave free"
        );
        let mut files = vec![PathBuf::from("/sys/devices/virtual/workqueue/cpumask")];
        for q in std::fs::read_dir("/sys/class/net/lo/queues")?.flatten() {
            if q.file_name().to_string_lossy().starts_with("rx-") {
                files.push(q.path().join("rps_cpus"));
            }
        }
        let mut iso = Isolation { saved: Vec::new() };
        let m = mask(housekeeping);
        for f in files {
            let old = std::fs::read_to_string(&f)
                .with_context(|| format!("--isolate: {}", f.display()))?;
            std::fs::write(&f, &m).with_context(|| {
                format!("--isolate: cannot write {} (root is needed)", f.display())
            })?;
            eprintln!("isolate: {} = {m} (was {})", f.display(), old.trim());
            iso.saved.push((f, old.trim().to_string()));
        }
        Ok(iso)
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        for (f, old) in self.saved.iter().rev() {
            if let Err(e) = std::fs::write(f, old) {
                eprintln!("isolate: could not restore {} to {old}: {e}", f.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_are_sysfs_hex() {
        assert_eq!(super::mask(&[1]), "00000002");
        assert_eq!(super::mask(&[1, 2, 3]), "0000000e");
        assert_eq!(super::mask(&[0, 33]), "00000002,00000001");
    }
}
