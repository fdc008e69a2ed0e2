package server

import "mellium.im/xmpp/stream"

// DisconnectUser ends every session of the local account username (a
// localpart) with the stream error cond and its human-readable text (RFC
// 6120 §4.9.3), for example stream.NotAuthorized with "account deleted"
// when an administrator deletes or locks the account (as Prosody does).
// Sessions waiting for a XEP-0198 resumption end too, without one. Each
// session is torn down as for any other stream error: unavailable presence
// to contacts, unacknowledged messages rerouted. It returns how many
// sessions it ended; streams still negotiating are not counted (they fail
// at authentication once the credentials are gone).
func (s *Server) DisconnectUser(username string, cond stream.Error, text string) int {
	sessions := s.router.sessions(username)
	for _, sess := range sessions {
		sess.Terminate(newStreamError(cond, text))
	}
	if len(sessions) > 0 {
		s.log.Info("sessions of an account ended", "user", username, "sessions", len(sessions), "condition", cond.Err)
	}
	return len(sessions)
}
