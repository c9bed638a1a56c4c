//! The ceiling of the embedded log: the bytes the log stores, under the keys it
//! uses, put into a bare RocksDB opened with the log's own options and iterated
//! back — no partitioning, offsets, time index, partition state or decoding.
//!
//! Shared by the log benchmark (`pipeline/benches/log.rs`) and `courier bench
//! --baselines`, so both compare courier with the same baseline.

use std::path::Path;
use std::time::Instant;

use rocksdb::{ColumnFamilyDescriptor, DB, ReadOptions, WriteBatch, WriteOptions};

use super::{CF_RECORDS, codec, db_options, records_cf_options};
use crate::log::{LogError, Record};

/// A record as the log stores it: its key and its framed bytes.
pub type Framed = ([u8; 16], Vec<u8>);

/// The key and framed bytes `record` is stored as at (topic id, partition, offset).
pub fn frame(topic_id: u32, partition: u32, offset: u64, record: &Record) -> Framed {
    let mut buf = Vec::new();
    codec::encode_record(
        &mut buf,
        record.timestamp_ms,
        &record.key,
        &record.headers,
        &record.value,
    );
    (codec::record_key(topic_id, partition, offset), buf)
}

/// What a timed pass did.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall time of the pass, in seconds.
    pub secs: f64,
    /// Records written or read.
    pub records: u64,
    /// Their framed bytes.
    pub bytes: u64,
}

impl Sample {
    /// Records per second (0 for an empty pass).
    pub fn per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.records as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// A bare RocksDB with the log's records column family and options.
pub struct RawLog {
    db: DB,
}

fn err(op: &'static str, e: impl std::fmt::Display) -> LogError {
    LogError::backend(op, e)
}

impl RawLog {
    /// Opens (creating if needed) the raw database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let db = DB::open_cf_descriptors(
            &db_options(),
            dir,
            vec![ColumnFamilyDescriptor::new(
                CF_RECORDS,
                records_cf_options(),
            )],
        )
        .map_err(|e| {
            err(
                "open the raw baseline database",
                format!("{}: {e}", dir.display()),
            )
        })?;
        Ok(RawLog { db })
    }

    fn records(&self) -> Result<&rocksdb::ColumnFamily, LogError> {
        self.db
            .cf_handle(CF_RECORDS)
            .ok_or_else(|| err("open the raw baseline database", "no records column family"))
    }

    /// Writes each batch as one `WriteBatch` (as one append writes), fsyncing
    /// the WAL on each when `sync` (the log's `fsync`).
    pub fn put<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a [Framed]>,
        sync: bool,
    ) -> Result<Sample, LogError> {
        let cf = self.records()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        let started = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        for batch in batches {
            let mut b = WriteBatch::default();
            for (k, v) in batch {
                b.put_cf(cf, k, v);
                bytes += v.len() as u64;
            }
            records += batch.len() as u64;
            self.db
                .write_opt(b, &wo)
                .map_err(|e| err("write the raw baseline database", e))?;
        }
        Ok(Sample {
            secs: started.elapsed().as_secs_f64(),
            records,
            bytes,
        })
    }

    /// Iterates over every record, touching each value; with `decode`, also
    /// unframes it and protobuf-decodes the event on this one thread, the least
    /// any replay that hands out events must do.
    pub fn iterate(&self, decode: bool) -> Result<Sample, LogError> {
        let cf = self.records()?;
        let started = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut it = self.db.raw_iterator_cf_opt(cf, ReadOptions::default());
        it.seek_to_first();
        while let Some(v) = it.value() {
            bytes += v.len() as u64;
            if decode {
                let framed =
                    codec::decode_record(v).map_err(|e| err("decode a raw baseline record", e))?;
                courier_schemas::decode(framed.value)
                    .map_err(|e| err("decode a raw baseline event", e))?;
            }
            records += 1;
            it.next();
        }
        it.status()
            .map_err(|e| err("iterate the raw baseline database", e))?;
        Ok(Sample {
            secs: started.elapsed().as_secs_f64(),
            records,
            bytes,
        })
    }
}
