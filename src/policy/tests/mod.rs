//! Independent tests of the policy against the rules docs/policy.md states: the combine rules, the phase
//! machine of section 3 through the review endpoints, AdmissionReview fixtures in the shape the
//! API server sends, and property tests over generated statuses and writers.

mod combine;
mod kubernaut;
mod match_conditions;
mod props;
mod review;
mod support;
