#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nook_fuzz::image::image_user(data));
