//! Which path a frame takes from the Vulkan device to I420: the GPU compute conversion, or a
//! read-back of the RGBA pixels converted on the CPU with SIMD.
//!
//! On a GPU the compute pass wins: the frame crosses to the CPU as 1.5 bytes a pixel and the
//! CPU does no colour maths. On a CPU device (Mesa's lavapipe, SwiftShader) the "GPU" is the
//! same cores running shaders through a general-purpose compiler, and a hand-vectorised
//! converter ([`crate::convert::simd`]) does the same work several times faster, so there the
//! pixels are read back as they are and converted on the CPU.
//!
//! [`CapturePath`] is the setting (`gpu`, `cpu` or `auto`, the default); [`CapturePath::resolve`]
//! is the choice for a device, a pure function of its `VkPhysicalDeviceProperties::deviceType`.
//! The capture layer reads the setting from [`PATH_ENV`] ([`CapturePath::from_env`]); the node
//! passes its `--capture-path` there, and gives it to the demo title directly.
//!
//! ```
//! use ash::vk::PhysicalDeviceType;
//! use capture::path::{CapturePath, ResolvedPath};
//! let setting: CapturePath = "auto".parse()?;
//! assert_eq!(setting.resolve(PhysicalDeviceType::CPU), ResolvedPath::Cpu);
//! assert_eq!(setting.resolve(PhysicalDeviceType::DISCRETE_GPU), ResolvedPath::Gpu);
//! # Ok::<(), capture::path::UnknownCapturePath>(())
//! ```

use ash::vk;

/// The environment variable the capture layer reads its [`CapturePath`] from (`gpu`, `cpu` or
/// `auto`; unset or empty means `auto`).
pub const PATH_ENV: &str = "STRATUS_CAPTURE_PATH";

/// Where frames are converted to I420: the setting, before a device is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CapturePath {
    /// The compute shader, whatever the device.
    Gpu,
    /// Read the pixels back and convert them on the CPU, whatever the device.
    Cpu,
    /// [`CapturePath::Cpu`] on a CPU device, [`CapturePath::Gpu`] on any other.
    #[default]
    Auto,
}

/// The path chosen for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolvedPath {
    /// The compute shader converts; the CPU reads back I420.
    Gpu,
    /// The CPU reads back the packed pixels and converts them with SIMD.
    Cpu,
}

impl ResolvedPath {
    /// `"gpu"` or `"cpu"`, as benchmarks and logs report it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for ResolvedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capture path that is not `gpu`, `cpu` or `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capture path {0:?}: expected gpu, cpu or auto")]
pub struct UnknownCapturePath(pub String);

impl CapturePath {
    /// The setting's name, as [`std::str::FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
            Self::Auto => "auto",
        }
    }

    /// The path for a device of this type: a forced path as it is; `Auto` converts on the CPU
    /// exactly when the device is a CPU (its shaders run on the same cores, only slower than
    /// the SIMD converter).
    pub fn resolve(self, device_type: vk::PhysicalDeviceType) -> ResolvedPath {
        match self {
            Self::Gpu => ResolvedPath::Gpu,
            Self::Cpu => ResolvedPath::Cpu,
            Self::Auto if device_type == vk::PhysicalDeviceType::CPU => ResolvedPath::Cpu,
            Self::Auto => ResolvedPath::Gpu,
        }
    }

    /// Reads [`PATH_ENV`]: unset or empty is [`CapturePath::Auto`].
    pub fn from_env() -> Result<Self, UnknownCapturePath> {
        match std::env::var(PATH_ENV) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::Auto),
            Err(std::env::VarError::NotUnicode(value)) => {
                Err(UnknownCapturePath(value.to_string_lossy().into_owned()))
            }
        }
    }
}

impl std::str::FromStr for CapturePath {
    type Err = UnknownCapturePath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            _ => Err(UnknownCapturePath(s.to_string())),
        }
    }
}

impl std::fmt::Display for CapturePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_print_back() {
        for path in [CapturePath::Gpu, CapturePath::Cpu, CapturePath::Auto] {
            assert_eq!(path.to_string().parse::<CapturePath>(), Ok(path));
        }
        assert_eq!(" CPU ".parse::<CapturePath>(), Ok(CapturePath::Cpu));
        assert_eq!(CapturePath::default(), CapturePath::Auto);
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for bad in ["", "vulkan", "gpu,cpu", "c pu"] {
            let err = bad.parse::<CapturePath>().expect_err(bad);
            assert_eq!(
                err.to_string(),
                format!("unknown capture path {bad:?}: expected gpu, cpu or auto")
            );
        }
    }

    #[test]
    fn auto_converts_on_the_cpu_only_on_cpu_devices() {
        use vk::PhysicalDeviceType as T;
        let cases = [
            (T::CPU, ResolvedPath::Cpu),
            (T::DISCRETE_GPU, ResolvedPath::Gpu),
            (T::INTEGRATED_GPU, ResolvedPath::Gpu),
            (T::VIRTUAL_GPU, ResolvedPath::Gpu),
            (T::OTHER, ResolvedPath::Gpu),
        ];
        for (device, expected) in cases {
            assert_eq!(CapturePath::Auto.resolve(device), expected, "{device:?}");
            // A forced path ignores the device.
            assert_eq!(CapturePath::Gpu.resolve(device), ResolvedPath::Gpu);
            assert_eq!(CapturePath::Cpu.resolve(device), ResolvedPath::Cpu);
        }
    }
}
