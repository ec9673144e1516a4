//! The combine step: arbitrary JSON old/new statuses, writer and clock.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wfe_admission_fuzz::combine_json(data));
