package harness

import (
	"os"
	"os/exec"
	"testing"
)

// RequirePeer returns the path of binary, looked up in PATH. If it is
// missing, the test fails when the CI environment variable is non-empty (CI
// must have every peer; scripts/deps.sh installs them) and is skipped
// otherwise.
func RequirePeer(t testing.TB, binary string) string {
	t.Helper()
	p, err := exec.LookPath(binary)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("harness: peer %q not found (CI is set; run scripts/deps.sh): %v", binary, err)
	}
	t.Skipf("harness: peer %q not found, skipping (scripts/deps.sh installs it): %v", binary, err)
	return ""
}
