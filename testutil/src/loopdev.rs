//! Loop devices for block I/O tests, created with ioctls (no `losetup`).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::TempDir;

// linux/loop.h
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// A loop device over a sparse file in an `nk` temp dir; detached on drop (and by the kernel
/// when the last fd closes: autoclear).
#[derive(Debug)]
pub struct LoopDevice {
    dev: OwnedFd,
    /// `/dev/loopN`.
    pub path: String,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    _backing: TempDir,
}

impl LoopDevice {
    /// Attaches a new loop device over a `size`-byte sparse file. Loads the `loop` module
    /// first where `/dev/loop-control` is missing (a kernel without udev, like the v2 VM).
    pub fn new(size: u64) -> io::Result<LoopDevice> {
        if !Path::new("/dev/loop-control").exists() {
            let _ = std::process::Command::new("modprobe").arg("loop").status();
        }
        let backing = TempDir::new("loop")?;
        let image = fs::File::create_new(backing.join("img"))?;
        image.set_len(size)?;
        let ctl = fs::File::open("/dev/loop-control")?;
        let mut last = io::Error::from_raw_os_error(libc::EBUSY);
        for _ in 0..10 {
            // SAFETY: an integer-only ioctl on an fd we own.
            let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let path = format!("/dev/loop{n}");
            let dev = OwnedFd::from(fs::OpenOptions::new().read(true).write(true).open(&path)?);
            // SAFETY: both fds are open for the duration of the call.
            if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, image.as_raw_fd()) } < 0 {
                // Taken by someone else between GET_FREE and SET_FD: ask again.
                last = io::Error::last_os_error();
                continue;
            }
            let rdev = std::os::unix::fs::MetadataExt::rdev(&fs::metadata(&path)?);
            let device =
                LoopDevice { dev, path, major: libc::major(rdev), minor: libc::minor(rdev), _backing: backing };
            // SAFETY: zeroed plain data is a valid loop_info64.
            let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
            info.lo_flags = LO_FLAGS_AUTOCLEAR;
            // SAFETY: info is a valid loop_info64 that outlives the call.
            if unsafe { libc::ioctl(device.dev.as_raw_fd(), LOOP_SET_STATUS64, &info as *const LoopInfo64) } < 0 {
                return Err(io::Error::last_os_error()); // dropping `device` detaches it
            }
            return Ok(device);
        }
        Err(last)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: an ioctl without arguments on an fd we own.
        unsafe { libc::ioctl(self.dev.as_raw_fd(), LOOP_CLR_FD) };
    }
}
