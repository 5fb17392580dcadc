//! The kernel side of the uinput backend: what each virtual device declares, the ioctls that
//! create it, and the `struct input_event` encoding of its records.
//!
//! `libc` declares the uinput structs but not the ioctl numbers, so they are built here like the
//! kernel's `_IOC` macros; compile-time asserts pin the struct layouts the code relies on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::mem::{offset_of, size_of};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use libc::c_int;

use super::*;

/// The range of one absolute axis, as `struct input_absinfo` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AbsAxis {
    code: u16,
    min: i32,
    max: i32,
    fuzz: i32,
    flat: i32,
}

/// What a virtual device can emit; each code must be declared before the device is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceSpec {
    name: String,
    product: u16,
    keys: Vec<u16>,
    rels: Vec<u16>,
    abs: Vec<AbsAxis>,
}

impl DeviceSpec {
    pub(super) fn for_device(device: Device, config: &UinputConfig) -> DeviceSpec {
        let mouse_buttons = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA];
        match device {
            Device::KeyboardMouse => DeviceSpec {
                name: format!("{} keyboard and mouse", config.name),
                product: 1,
                keys: KeyCode::ALL
                    .iter()
                    .map(|&key| evdev_key(key))
                    .chain(mouse_buttons)
                    .collect(),
                rels: vec![
                    REL_X,
                    REL_Y,
                    REL_WHEEL,
                    REL_HWHEEL,
                    REL_WHEEL_HI_RES,
                    REL_HWHEEL_HI_RES,
                ],
                abs: Vec::new(),
            },
            Device::Pointer => {
                let max = Translator::new(config.pointer_size).pointer_max;
                let axis = |code, max| AbsAxis {
                    code,
                    min: 0,
                    max,
                    fuzz: 0,
                    flat: 0,
                };
                DeviceSpec {
                    name: format!("{} absolute pointer", config.name),
                    product: 2,
                    keys: mouse_buttons[..3].to_vec(),
                    rels: Vec::new(),
                    abs: vec![axis(ABS_X, max.0), axis(ABS_Y, max.1)],
                }
            }
            Device::Gamepad(pad) => {
                let stick = |code| AbsAxis {
                    code,
                    min: -STICK_MAX,
                    max: STICK_MAX,
                    fuzz: 16,
                    flat: 128,
                };
                let trigger = |code| AbsAxis {
                    code,
                    min: 0,
                    max: i32::from(u16::MAX),
                    fuzz: 0,
                    flat: 0,
                };
                DeviceSpec {
                    name: format!("{} gamepad {}", config.name, u32::from(pad) + 1),
                    product: 0x10 + u16::from(pad),
                    keys: GAMEPAD_BUTTON_CODES.to_vec(),
                    rels: Vec::new(),
                    abs: GAMEPAD_AXIS_CODES
                        .iter()
                        .map(|&code| stick(code))
                        .chain(TRIGGERS.iter().map(|&(_, code)| trigger(code)))
                        .collect(),
                }
            }
        }
    }
}

// ioctl request numbers, encoded like the kernel's _IOC macros (asm-generic/ioctl.h, and the
// variant used by powerpc, mips and sparc).
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc_dir {
    pub const NONE: u32 = 1;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 4;
    pub const SHIFT: u32 = 29;
    pub const SIZE_BITS: u32 = 13;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc_dir {
    pub const NONE: u32 = 0;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 1;
    pub const SHIFT: u32 = 30;
    pub const SIZE_BITS: u32 = 14;
}

/// `_IOC(dir, 'U', nr, size)`: uinput's ioctl type is `'U'`.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << ioc_dir::SIZE_BITS), "ioctl argument too large");
    (dir << ioc_dir::SHIFT) | ((size as u32) << 16) | ((b'U' as u32) << 8) | nr
}
const UI_DEV_CREATE: u32 = ioc(ioc_dir::NONE, 1, 0);
const UI_DEV_DESTROY: u32 = ioc(ioc_dir::NONE, 2, 0);
const UI_DEV_SETUP: u32 = ioc(ioc_dir::WRITE, 3, size_of::<libc::uinput_setup>());
const UI_ABS_SETUP: u32 = ioc(ioc_dir::WRITE, 4, size_of::<libc::uinput_abs_setup>());
const UI_SET_EVBIT: u32 = ioc(ioc_dir::WRITE, 100, size_of::<c_int>());
const UI_SET_KEYBIT: u32 = ioc(ioc_dir::WRITE, 101, size_of::<c_int>());
const UI_SET_RELBIT: u32 = ioc(ioc_dir::WRITE, 102, size_of::<c_int>());
const UI_SET_ABSBIT: u32 = ioc(ioc_dir::WRITE, 103, size_of::<c_int>());
/// `UI_GET_SYSNAME(len)` for a buffer of [`SYSNAME_LEN`] bytes.
const UI_GET_SYSNAME: u32 = ioc(ioc_dir::READ, 44, SYSNAME_LEN);
const SYSNAME_LEN: usize = 64;

// The kernel ABI: the structs libc declares must have the kernel's sizes, and input_event must
// end with type, code and value after the timestamp, which is what `encode_records` relies on.
const _: () = assert!(size_of::<libc::input_id>() == 8);
const _: () = assert!(size_of::<libc::input_absinfo>() == 24);
const _: () = assert!(size_of::<libc::uinput_setup>() == 8 + libc::UINPUT_MAX_NAME_SIZE + 4);
const _: () = assert!(size_of::<libc::uinput_abs_setup>() == 4 + 24);
const _: () = assert!(size_of::<libc::uinput_user_dev>() == USER_DEV_BYTES);
const _: () = assert!(offset_of!(libc::input_event, type_) == TIMESTAMP_BYTES);
const _: () = assert!(offset_of!(libc::input_event, code) == TIMESTAMP_BYTES + 2);
const _: () = assert!(offset_of!(libc::input_event, value) == TIMESTAMP_BYTES + 4);
const _: () = assert!(size_of::<libc::input_event>() == TIMESTAMP_BYTES + 8);

/// Bytes of `struct input_event` before `type`: the timestamp, 16 on 64-bit targets.
const TIMESTAMP_BYTES: usize = size_of::<libc::input_event>() - 8;
/// `struct uinput_user_dev`: name, id, ff_effects_max, then absmax, absmin, absfuzz, absflat.
const USER_DEV_BYTES: usize = libc::UINPUT_MAX_NAME_SIZE + 8 + 4 + 4 * libc::ABS_CNT * 4;

/// `struct input_event`s for `records`, native-endian, timestamps zero (the kernel sets them).
fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(records.len() * size_of::<libc::input_event>());
    for record in records {
        bytes.extend_from_slice(&[0; TIMESTAMP_BYTES]);
        bytes.extend_from_slice(&record.event_type.to_ne_bytes());
        bytes.extend_from_slice(&record.code.to_ne_bytes());
        bytes.extend_from_slice(&record.value.to_ne_bytes());
    }
    bytes
}

/// A device name as the fixed, NUL-terminated `char[UINPUT_MAX_NAME_SIZE]` the kernel takes.
fn name_bytes(name: &str) -> [u8; libc::UINPUT_MAX_NAME_SIZE] {
    let mut bytes = [0; libc::UINPUT_MAX_NAME_SIZE];
    let len = name.len().min(libc::UINPUT_MAX_NAME_SIZE - 1);
    bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    bytes
}

fn input_id(spec: &DeviceSpec) -> libc::input_id {
    libc::input_id {
        bustype: BUS_VIRTUAL,
        vendor: 0,
        product: spec.product,
        version: 1,
    }
}

/// `struct uinput_user_dev` for kernels before 4.5, which lack `UI_DEV_SETUP`.
fn encode_user_dev(spec: &DeviceSpec) -> Vec<u8> {
    let id = input_id(spec);
    let mut bytes = Vec::with_capacity(USER_DEV_BYTES);
    bytes.extend_from_slice(&name_bytes(&spec.name));
    for half in [id.bustype, id.vendor, id.product, id.version] {
        bytes.extend_from_slice(&half.to_ne_bytes());
    }
    bytes.extend_from_slice(&0u32.to_ne_bytes()); // ff_effects_max
    let fields: [fn(&AbsAxis) -> i32; 4] = [|a| a.max, |a| a.min, |a| a.fuzz, |a| a.flat];
    for field in fields {
        let mut values = [0i32; libc::ABS_CNT];
        for axis in &spec.abs {
            if let Some(slot) = values.get_mut(usize::from(axis.code)) {
                *slot = field(axis);
            }
        }
        values
            .iter()
            .for_each(|value| bytes.extend_from_slice(&value.to_ne_bytes()));
    }
    bytes
}

/// One device created through its own open file on `/dev/uinput`; destroyed when dropped.
#[derive(Debug)]
pub(super) struct VirtualDevice {
    file: File,
    name: String,
}

impl VirtualDevice {
    pub(super) fn create(path: &Path, spec: &DeviceSpec) -> Result<VirtualDevice, InjectError> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| InjectError::Unavailable {
                backend: BACKEND,
                reason: match e.kind() {
                    io::ErrorKind::NotFound => format!(
                        "{} does not exist (load the uinput module: modprobe uinput)",
                        path.display()
                    ),
                    io::ErrorKind::PermissionDenied => format!(
                        "permission denied opening {} (give the node's user write access, e.g. a \
                         udev rule adding it to the `input` group, or run it as root)",
                        path.display()
                    ),
                    _ => format!("cannot open {}: {e}", path.display()),
                },
            })?;
        let device = VirtualDevice {
            file,
            name: spec.name.clone(),
        };
        let failed = |what: &str, e: io::Error| InjectError::Failed {
            backend: BACKEND,
            reason: format!("cannot create {:?}: {what}: {e}", spec.name),
        };
        if let Err(e) = device.ioctl_int(UI_SET_EVBIT, EV_SYN) {
            return Err(if e.raw_os_error() == Some(libc::ENOTTY) {
                InjectError::Unavailable {
                    backend: BACKEND,
                    reason: format!("{} is not a uinput device", path.display()),
                }
            } else {
                failed("UI_SET_EVBIT", e)
            });
        }
        let bits = [
            (EV_KEY, UI_SET_KEYBIT, spec.keys.as_slice()),
            (EV_REL, UI_SET_RELBIT, spec.rels.as_slice()),
        ];
        for (event_type, request, codes) in bits {
            if codes.is_empty() {
                continue;
            }
            device
                .ioctl_int(UI_SET_EVBIT, event_type)
                .map_err(|e| failed("UI_SET_EVBIT", e))?;
            for &code in codes {
                device
                    .ioctl_int(request, code)
                    .map_err(|e| failed("UI_SET_KEYBIT/RELBIT", e))?;
            }
        }
        if !spec.abs.is_empty() {
            device
                .ioctl_int(UI_SET_EVBIT, EV_ABS)
                .map_err(|e| failed("UI_SET_EVBIT", e))?;
            for axis in &spec.abs {
                device
                    .ioctl_int(UI_SET_ABSBIT, axis.code)
                    .map_err(|e| failed("UI_SET_ABSBIT", e))?;
            }
        }
        let setup = libc::uinput_setup {
            id: input_id(spec),
            name: name_bytes(&spec.name).map(|b| b as libc::c_char),
            ff_effects_max: 0,
        };
        match device.ioctl_write(UI_DEV_SETUP, &setup) {
            Ok(()) => {
                for axis in &spec.abs {
                    let abs_setup = libc::uinput_abs_setup {
                        code: axis.code,
                        absinfo: libc::input_absinfo {
                            value: 0,
                            minimum: axis.min,
                            maximum: axis.max,
                            fuzz: axis.fuzz,
                            flat: axis.flat,
                            resolution: 0,
                        },
                    };
                    device
                        .ioctl_write(UI_ABS_SETUP, &abs_setup)
                        .map_err(|e| failed("UI_ABS_SETUP", e))?;
                }
            }
            // Kernels before 4.5 answer unknown requests with EINVAL: use the legacy write.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (&device.file)
                .write_all(&encode_user_dev(spec))
                .map_err(|e| failed("writing uinput_user_dev", e))?,
            Err(e) => return Err(failed("UI_DEV_SETUP", e)),
        }
        device
            .ioctl_none(UI_DEV_CREATE)
            .map_err(|e| failed("UI_DEV_CREATE", e))?;
        Ok(device)
    }

    pub(super) fn write(&mut self, records: &[Record]) -> Result<(), InjectError> {
        self.file
            .write_all(&encode_records(records))
            .map_err(|e| InjectError::Failed {
                backend: BACKEND,
                reason: format!("writing to {:?}: {e}", self.name),
            })
    }

    /// `/dev/input/eventN`, found through the device's sysfs directory.
    pub(super) fn event_node(&self) -> Option<PathBuf> {
        let mut buffer = [0u8; SYSNAME_LEN];
        self.ioctl_read(UI_GET_SYSNAME, &mut buffer).ok()?;
        let len = buffer.iter().position(|&b| b == 0)?;
        let sysname = std::str::from_utf8(&buffer[..len]).ok()?;
        let dir = Path::new("/sys/devices/virtual/input").join(sysname);
        std::fs::read_dir(dir).ok()?.find_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.starts_with("event")
                .then(|| Path::new("/dev/input").join(name))
        })
    }

    fn check(rc: c_int) -> io::Result<()> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// An ioctl without argument.
    fn ioctl_none(&self, request: u32) -> io::Result<()> {
        // SAFETY: the file is open for the whole call, and the request takes no argument.
        Self::check(unsafe { libc::ioctl(self.file.as_raw_fd(), request as libc::Ioctl) })
    }

    /// One of the `UI_SET_*BIT` ioctls, whose argument is the code itself.
    fn ioctl_int(&self, request: u32, code: u16) -> io::Result<()> {
        // SAFETY: the file is open for the whole call; the argument is passed by value and the
        // kernel does not dereference it.
        Self::check(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as libc::Ioctl,
                c_int::from(code),
            )
        })
    }

    /// An ioctl that reads a `T`, one of libc's plain C uinput structs, from our memory.
    fn ioctl_write<T: Copy>(&self, request: u32, arg: &T) -> io::Result<()> {
        debug_assert_eq!(
            request >> 16 & ((1 << ioc_dir::SIZE_BITS) - 1),
            size_of::<T>() as u32
        );
        // SAFETY: the request's size field is `size_of::<T>()` (checked above in debug builds;
        // the constants are built from the same types), so the kernel reads exactly the `T`
        // behind `arg`, which is alive and initialised for the whole call.
        Self::check(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as libc::Ioctl,
                std::ptr::from_ref(arg),
            )
        })
    }

    /// An ioctl that writes at most `buffer.len()` bytes into `buffer`.
    fn ioctl_read(&self, request: u32, buffer: &mut [u8; SYSNAME_LEN]) -> io::Result<()> {
        // SAFETY: the request's size field is SYSNAME_LEN, the size of `buffer`, which is
        // exclusively borrowed for the whole call, so the kernel writes only inside it.
        Self::check(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as libc::Ioctl,
                buffer.as_mut_ptr(),
            )
        })
    }
}

impl Drop for VirtualDevice {
    fn drop(&mut self) {
        // Closing the file destroys the device too; the explicit request makes the order
        // (device gone before the descriptor) independent of other open handles.
        let _ = self.ioctl_none(UI_DEV_DESTROY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86"))]
    fn ioctl_numbers_match_linux_uinput_h() {
        // The values `_IO`/`_IOW`/`_IOR` give in C on these architectures.
        assert_eq!(UI_DEV_CREATE, 0x5501);
        assert_eq!(UI_DEV_DESTROY, 0x5502);
        assert_eq!(UI_DEV_SETUP, 0x405c_5503);
        assert_eq!(UI_ABS_SETUP, 0x401c_5504);
        assert_eq!(UI_SET_EVBIT, 0x4004_5564);
        assert_eq!(UI_SET_KEYBIT, 0x4004_5565);
        assert_eq!(UI_SET_RELBIT, 0x4004_5566);
        assert_eq!(UI_SET_ABSBIT, 0x4004_5567);
        assert_eq!(UI_GET_SYSNAME, 0x8040_552c);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_sizes_match_the_64_bit_kernel_abi() {
        assert_eq!(size_of::<libc::input_event>(), 24);
        assert_eq!(size_of::<libc::uinput_setup>(), 92);
        assert_eq!(size_of::<libc::uinput_abs_setup>(), 28);
        assert_eq!(size_of::<libc::uinput_user_dev>(), 1116);
    }

    #[test]
    fn records_encode_as_input_events() {
        let bytes = encode_records(&[Record::new(EV_KEY, 30, 1), Record::SYN_REPORT]);
        let size = size_of::<libc::input_event>();
        assert_eq!(bytes.len(), 2 * size);
        assert!(bytes[..TIMESTAMP_BYTES].iter().all(|&b| b == 0));
        let first = &bytes[TIMESTAMP_BYTES..size];
        assert_eq!(first[..2], EV_KEY.to_ne_bytes());
        assert_eq!(first[2..4], 30u16.to_ne_bytes());
        assert_eq!(first[4..8], 1i32.to_ne_bytes());
        assert!(
            bytes[size..].iter().all(|&b| b == 0),
            "SYN_REPORT is all zero"
        );
    }

    #[test]
    fn names_are_truncated_and_nul_terminated() {
        let long = "x".repeat(200);
        let bytes = name_bytes(&long);
        assert_eq!(bytes[libc::UINPUT_MAX_NAME_SIZE - 1], 0);
        assert_eq!(bytes[libc::UINPUT_MAX_NAME_SIZE - 2], b'x');
        assert_eq!(&name_bytes("pad")[..4], b"pad\0");
    }

    #[test]
    fn legacy_user_dev_carries_the_abs_ranges() {
        let config = UinputConfig {
            pointer_size: (1280, 720),
            ..UinputConfig::default()
        };
        let spec = DeviceSpec::for_device(Device::Pointer, &config);
        let bytes = encode_user_dev(&spec);
        assert_eq!(bytes.len(), size_of::<libc::uinput_user_dev>());
        assert_eq!(&bytes[..25], b"Stratus absolute pointer\0");
        let at = |offset: usize| {
            i32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
        };
        let absmax = offset_of!(libc::uinput_user_dev, absmax);
        let absmin = offset_of!(libc::uinput_user_dev, absmin);
        assert_eq!(at(absmax + 4 * usize::from(ABS_X)), 1279);
        assert_eq!(at(absmax + 4 * usize::from(ABS_Y)), 719);
        assert_eq!(at(absmin + 4 * usize::from(ABS_Y)), 0);
        let product = offset_of!(libc::uinput_user_dev, id) + 4;
        assert_eq!(bytes[product..product + 2], spec.product.to_ne_bytes());
    }

    /// Every record the translator can produce for a device must be declared by that device,
    /// or the kernel silently drops it.
    #[test]
    fn devices_declare_everything_the_translator_emits() {
        let config = UinputConfig::default();
        let mut translator = Translator::new(config.pointer_size);
        let mut kinds: Vec<EventKind> = KeyCode::ALL
            .iter()
            .map(|&code| EventKind::Key { code, down: true })
            .collect();
        for button in (0..5).filter_map(MouseButton::from_u8) {
            kinds.push(EventKind::Button { button, down: true });
        }
        kinds.push(EventKind::MouseMoveRel { dx: 1, dy: 1 });
        kinds.push(EventKind::MouseMove {
            x: u16::MAX,
            y: u16::MAX,
        });
        kinds.push(EventKind::Wheel { dx: 120, dy: 120 });
        for pad in 0..MAX_GAMEPADS {
            for button in 0..crate::GAMEPAD_BUTTONS {
                kinds.push(EventKind::GamepadButton {
                    pad,
                    button,
                    value: u16::MAX,
                });
            }
            for axis in 0..crate::GAMEPAD_AXES {
                for value in [i16::MIN, i16::MAX] {
                    kinds.push(EventKind::GamepadAxis { pad, axis, value });
                }
            }
        }
        let mut batches = Vec::new();
        for kind in kinds {
            let event = InputEvent {
                seq: 0,
                t_us: 0,
                kind,
            };
            batches.push(translator.translate(&event).expect("valid event"));
        }
        batches.extend(translator.release_all());
        for batch in batches {
            let spec = DeviceSpec::for_device(batch.device, &config);
            for record in &batch.records {
                let declared = match record.event_type {
                    EV_SYN => true,
                    EV_KEY => spec.keys.contains(&record.code),
                    EV_REL => spec.rels.contains(&record.code),
                    EV_ABS => spec.abs.iter().any(|axis| {
                        axis.code == record.code && (axis.min..=axis.max).contains(&record.value)
                    }),
                    _ => false,
                };
                assert!(declared, "{:?} does not declare {record:?}", batch.device);
            }
        }
    }
}
