package kvraft

// testLimits are the state limits of the state machine tests.
var testLimits = stateLimits{historyEvents: 1000, historyBytes: 1 << 20}

// getValue reads key's value from the local state.
func (s *state) getValue(key string) (string, bool) {
	r, _ := s.get(key)
	if r == nil {
		return "", false
	}
	return string(r.value), true
}
