module gokrazy/build/github.com/hearthxmpp/hearth

go 1.26.0

// Hearth is built from this checkout (the repository root). scripts/image.sh
// copies this instance to image/out/ and rewrites the path to an absolute one.
replace github.com/hearthxmpp/hearth => ../../../../../..

require github.com/hearthxmpp/hearth v0.0.0-00010101000000-000000000000 // indirect
