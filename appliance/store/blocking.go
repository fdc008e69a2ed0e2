package store

// schemaBlocking is the migration creating the tables for XEP-0191 block lists.
// Placeholder until the feature lands: a migration slot reserved in order.
const schemaBlocking = `CREATE TABLE IF NOT EXISTS placeholder_schemablocking (id INTEGER PRIMARY KEY) STRICT;`
