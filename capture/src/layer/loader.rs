//! The loader–layer interface (the structures of `vk_layer.h` that ash does not carry) and
//! the small unsafe helpers every hook needs.

use std::ffi::c_void;

use ash::vk;

pub(super) const LAYER_NEGOTIATE_INTERFACE_STRUCT: i32 = 1;
pub(super) const LAYER_LINK_INFO: i32 = 0;
pub(super) const LOADER_DATA_CALLBACK: i32 = 1;

/// The loader's dispatch-table pointer at the start of every dispatchable handle: the key
/// that ties a queue or command buffer to its device, and a physical device to its instance.
///
/// # Safety
/// `raw` must be a valid dispatchable handle.
pub(super) unsafe fn key(raw: u64) -> usize {
    // SAFETY: dispatchable handles point at an object whose first word is the dispatch table.
    unsafe { *(raw as usize as *const usize) }
}

/// `VkNegotiateLayerInterface`.
#[repr(C)]
#[derive(Debug)]
pub struct NegotiateLayerInterface {
    pub(super) s_type: i32,
    pub(super) p_next: *mut c_void,
    pub(super) loader_layer_interface_version: u32,
    pub(super) pfn_get_instance_proc_addr: Option<vk::PFN_vkGetInstanceProcAddr>,
    pub(super) pfn_get_device_proc_addr: Option<vk::PFN_vkGetDeviceProcAddr>,
    pub(super) pfn_get_physical_device_proc_addr: *const c_void,
}

#[repr(C)]
pub(super) struct LayerInstanceLink {
    pub(super) next: *mut LayerInstanceLink,
    pub(super) next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub(super) next_get_physical_device_proc_addr: *const c_void,
}

#[repr(C)]
pub(super) struct LayerDeviceLink {
    pub(super) next: *mut LayerDeviceLink,
    pub(super) next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub(super) next_get_device_proc_addr: vk::PFN_vkGetDeviceProcAddr,
}

/// `VkLayerInstanceCreateInfo` / `VkLayerDeviceCreateInfo`: only the union's first pointer
/// (`pLayerInfo` or the loader-data callback) is used.
#[repr(C)]
pub(super) struct LayerCreateInfo {
    pub(super) s_type: vk::StructureType,
    pub(super) p_next: *const c_void,
    pub(super) function: i32,
    pub(super) u: *mut c_void,
}

/// Finds the loader's create-info entry of `s_type` and `function` in a pNext chain.
///
/// # Safety
/// `p_next` must be a valid pNext chain.
pub(super) unsafe fn find_layer_info(
    mut p_next: *const c_void,
    s_type: vk::StructureType,
    function: i32,
) -> *mut LayerCreateInfo {
    while !p_next.is_null() {
        let info = p_next as *mut LayerCreateInfo;
        // SAFETY: every chain entry starts with sType and pNext; only matching entries are
        // read further.
        unsafe {
            if (*info).s_type == s_type && (*info).function == function {
                return info;
            }
            p_next = (*info).p_next;
        }
    }
    std::ptr::null_mut()
}

/// Casts a `PFN_vkVoidFunction` to a typed function pointer.
///
/// # Safety
/// `F` must be the function pointer type of the entry point `f` was looked up for.
pub(super) unsafe fn cast<F: Copy>(f: vk::PFN_vkVoidFunction) -> Option<F> {
    // SAFETY: both are thin function pointers of the same size; the caller names the type.
    f.map(|f| unsafe { std::mem::transmute_copy::<unsafe extern "system" fn(), F>(&f) })
}
