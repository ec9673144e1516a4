//! Reading an AdmissionReview: arbitrary bytes through `parse_review`, then both endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wfe_admission_fuzz::review_bytes(data));
