//! The first errors a new user meets are clear and name the fix.

use std::process::Command;

#[test]
fn missing_vulkan_driver_names_the_package() {
    // Point the Vulkan loader at a driver manifest that does not exist: no device at all.
    let out = Command::new(env!("CARGO_BIN_EXE_stratus-bench"))
        .args(["pipeline", "--frames", "1"])
        .env("VK_ICD_FILENAMES", "/nonexistent/stratus-no-driver.json")
        .env("VK_DRIVER_FILES", "/nonexistent/stratus-no-driver.json")
        .output()
        .expect("run stratus-bench");
    assert!(!out.status.success(), "must fail without a Vulkan device");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mesa-vulkan-drivers"), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "an error, not a panic: {stderr}"
    );
}

#[test]
fn bad_frame_size_is_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_stratus-bench"))
        .args(["pipeline", "--frames", "1", "--width", "1283"])
        .output()
        .expect("run stratus-bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("multiple of 8"), "stderr: {stderr}");
}
