#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nook_fuzz::layer::layer_apply(data));
