package mam

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// PageReader reads one page of an archive selected by q (the filters and
// paging of a parsed query), like [store.Store.QueryArchive] for a user's
// archive. An error matching [store.ErrNotFound] becomes item-not-found.
type PageReader func(ctx context.Context, q store.ArchiveQuery) (store.ArchivePage, error)

// Answer answers the XEP-0313 query iq (IQ set, payload <query/> in
// urn:xmpp:mam:2 or urn:xmpp:mam:1) on an archive other than a user's own,
// such as a MUC room's (XEP-0313 §6.1.2 "archives of MUC rooms"), exactly
// as user archives are answered: the same form, RSM and flip-page parsing
// (page size capped at maxPage; maxPage <= 0 means [DefaultMaxPageSize]),
// the same result messages (from iq's 'to' when set, to iq.From, results
// with <forwarded/> and a delay stamp) handed to send in order, the same
// byte budget per page (a quarter of s's send queue), and the returned
// <fin/> for the IQ result. The caller checks access first. send returns
// false when the requester is gone (then resource-constraint). Errors as for
// user archives: bad-request, feature-not-implemented, item-not-found, or
// read's error.
func Answer(ctx context.Context, s *server.Server, iq *server.IQ, maxPage int, read PageReader, send func(*xmlel.Element) bool) (*xmlel.Element, error) {
	a := &Archive{s: s, maxPage: DefaultMaxPageSize}
	MaxPageSize(maxPage)(a)
	return a.answer(ctx, iq, read, send)
}
