package store

// schemaPubSub is the migration creating the tables for XEP-0060/XEP-0163 PEP nodes and items.
// Placeholder until the feature lands: a migration slot reserved in order.
const schemaPubSub = `CREATE TABLE IF NOT EXISTS placeholder_schemapubsub (id INTEGER PRIMARY KEY) STRICT;`
