package pep

import (
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/stanza"
)

// Pubsub-specific error conditions (XEP-0060 §7.1.3, §6.5.9, qualified by
// NSErrors) that requests can fail with.
const (
	condPreconditionNotMet = "precondition-not-met"
	condNodeIDRequired     = "nodeid-required"
	condItemRequired       = "item-required"
	condInvalidPayload     = "invalid-payload"
	condPayloadRequired    = "payload-required"
	condPayloadTooBig      = "payload-too-big"
	condPresenceRequired   = "presence-subscription-required"
	condNotInRosterGroup   = "not-in-roster-group"
	condClosedNode         = "closed-node"
	condUnsupported        = "unsupported"
	condMaxNodesExceeded   = "max-nodes-exceeded"
	condInvalidOptions     = "invalid-options"
)

var (
	errConflict        = &server.StanzaError{Type: stanza.Cancel, Condition: stanza.Conflict}
	errPolicyViolation = &server.StanzaError{Type: stanza.Modify, Condition: stanza.PolicyViolation}
)

// pubsubError returns base with the pubsub condition cond as the
// application-specific condition element (RFC 6120 §8.3.2, XEP-0060 §7)
// and a text.
func pubsubError(base *server.StanzaError, cond, text string) *server.StanzaError {
	e := server.Errorf(base, text)
	e.App = xmlel.New(NSErrors, cond)
	return e
}

// preconditionNotMet is the answer to a publish whose publish-options do not
// match the node's configuration (XEP-0060 §7.1.5).
func preconditionNotMet(text string) *server.StanzaError {
	return pubsubError(errConflict, condPreconditionNotMet, text)
}
