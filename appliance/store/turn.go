package store

// SettingTURNSecret is the settings key holding the shared secret of the
// TURN REST API credentials (draft-uberti-behave-turn-rest-00 §2.2): Hearth's
// own TURN server and an external coturn with use-auth-secret /
// static-auth-secret=<value> both verify the passwords derived from it. The
// value is printable (hex); it is generated once by package turn.
const SettingTURNSecret = "turn-secret"
