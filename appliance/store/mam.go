package store

// schemaMAM is the migration creating the tables for XEP-0313 message archive.
// Placeholder until the feature lands: a migration slot reserved in order.
const schemaMAM = `CREATE TABLE IF NOT EXISTS placeholder_schemamam (id INTEGER PRIMARY KEY) STRICT;`
