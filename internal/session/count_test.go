package session

import "testing"

// Event texts say one message, not "1 messages", and one UID, not "UIDs 7".
func TestEventCounts(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{count(0, "message"), "0 messages"},
		{count(1, "message"), "1 message"},
		{count(2, "acknowledged message"), "2 acknowledged messages"},
		{uidsOf([]uint32{7}), "UID 7"},
		{uidsOf([]uint32{1, 2, 3, 9}), "UIDs 1:3,9"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
