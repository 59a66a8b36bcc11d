//! Placeholder: decoder under construction.
#![allow(unused)]

use super::batch::{Batch, Reject};
use super::schema::Schema;
use super::{DecodeCx, Reason};

pub struct CsvDecoder {}

impl CsvDecoder {
    pub fn new(schema: &Schema, columns: &[String]) -> CsvDecoder {
        CsvDecoder {}
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
