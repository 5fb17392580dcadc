//! Instance hooks: creation (keeps the next layer's `vkGetInstanceProcAddr` and an instance
//! table, which the device and swapchain hooks query) and destruction.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use ash::vk::{self, Handle};

use super::{guard, lock};
use crate::layer::loader::{LAYER_LINK_INFO, LayerInstanceLink, cast, find_layer_info, key};

/// What the layer keeps for one of the game's instances.
pub(super) struct InstanceData {
    pub(super) instance: ash::Instance,
    pub(super) next_gipa: vk::PFN_vkGetInstanceProcAddr,
}

/// Instances by their loader key.
static INSTANCES: Mutex<Option<HashMap<usize, Arc<InstanceData>>>> = Mutex::new(None);

pub(super) fn instance_by_key(k: usize) -> Option<Arc<InstanceData>> {
    lock(&INSTANCES).as_ref()?.get(&k).cloned()
}

pub(super) unsafe extern "system" fn create_instance(
    info: *const vk::InstanceCreateInfo<'_>,
    alloc: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Instance,
) -> vk::Result {
    // SAFETY: the loader passes a valid create info whose chain holds our link.
    let link_info = unsafe {
        find_layer_info(
            (*info).p_next,
            vk::StructureType::LOADER_INSTANCE_CREATE_INFO,
            LAYER_LINK_INFO,
        )
    };
    if link_info.is_null() {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    // SAFETY: the link list is valid; advancing it hands the next layer its own link, as the
    // loader–layer interface requires.
    let next_gipa = unsafe {
        let link = (*link_info).u as *mut LayerInstanceLink;
        if link.is_null() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        (*link_info).u = (*link).next as *mut c_void;
        (*link).next_get_instance_proc_addr
    };
    // SAFETY: looking up a global command with a null instance is allowed.
    let Some(next_create) = (unsafe {
        cast::<vk::PFN_vkCreateInstance>(next_gipa(
            vk::Instance::null(),
            c"vkCreateInstance".as_ptr(),
        ))
    }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: forwarding the application's arguments.
    let result = unsafe { next_create(info, alloc, out) };
    if result != vk::Result::SUCCESS {
        return result;
    }
    guard("vkCreateInstance", || {
        // SAFETY: `out` holds the new instance; the loader functions come from the next layer.
        let instance = unsafe { *out };
        // SAFETY: as above.
        let ash_instance = unsafe {
            ash::Instance::load_with(
                |name| std::mem::transmute(next_gipa(instance, name.as_ptr())),
                instance,
            )
        };
        let data = Arc::new(InstanceData {
            instance: ash_instance,
            next_gipa,
        });
        // SAFETY: valid dispatchable handle.
        let k = unsafe { key(instance.as_raw()) };
        lock(&INSTANCES)
            .get_or_insert_with(HashMap::new)
            .insert(k, data);
        tracing::debug!("stratus capture: instance created");
    });
    result
}

pub(super) unsafe extern "system" fn destroy_instance(
    instance: vk::Instance,
    alloc: *const vk::AllocationCallbacks<'_>,
) {
    if instance == vk::Instance::null() {
        return;
    }
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(instance.as_raw()) };
    let data = lock(&INSTANCES).as_mut().and_then(|m| m.remove(&k));
    if let Some(data) = data {
        // SAFETY: forwarding to the next layer's destroy.
        unsafe { (data.instance.fp_v1_0().destroy_instance)(instance, alloc) };
    }
}
