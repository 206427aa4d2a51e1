package transcode

import (
	"os"
	"testing"

	tt "github.com/ucgate/ucgate/transcode/transcodetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tt.RemoveClips()
	os.Exit(code)
}
