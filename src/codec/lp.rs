//! Placeholder: decoder under construction.
#![allow(unused)]

use super::Precision;
use super::batch::{Batch, Reject};
use super::schema::Schema;
use super::{DecodeCx, Reason};

pub struct LpDecoder {}

impl LpDecoder {
    pub fn new(schema: &Schema, measurement: Option<&str>, precision: Precision) -> LpDecoder {
        LpDecoder {}
    }

    pub fn decode(
        &mut self,
        line: &[u8],
        out: &mut Batch,
        cx: &mut DecodeCx<'_>,
    ) -> Result<bool, Reject> {
        Err(Reject::new(Reason::Malformed))
    }
}
