package triggers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// webhook posts events as JSON.
type webhook struct {
	url     string
	timeout time.Duration
	headers http.Header
	retries int
	client  *http.Client
	sleep   func(context.Context, time.Duration) bool
}

func newWebhook(name string, w *Webhook, client *http.Client, sleep func(context.Context, time.Duration) bool) *webhook {
	wh := &webhook{url: w.URL, timeout: w.Timeout, retries: defaultRetries, client: client, sleep: sleep,
		headers: http.Header{}}
	if wh.timeout == 0 {
		wh.timeout = defaultTimeout
	}
	if w.Retries != nil {
		wh.retries = *w.Retries
	}
	for k, v := range w.Headers {
		wh.headers.Set(k, v)
	}
	wh.headers.Set("Content-Type", "application/json")
	wh.headers.Set("User-Agent", "ucgate-triggers")
	wh.headers.Set("X-Ucgate-Trigger", name)
	return wh
}

// backoff is the wait before retry n (1, 2, ...): 1s, 2s, 4s ... at most 30s.
func backoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 5), 30*time.Second)
}

// maxDrain bounds how much of a response body is read (to reuse the
// connection) before it is closed.
const maxDrain = 64 << 10

func (w *webhook) run(ctx context.Context, j job) error {
	body, err := json.Marshal(j.ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	var last error
	for attempt := 0; attempt <= w.retries; attempt++ {
		if attempt > 0 && !w.sleep(ctx, backoff(attempt)) {
			break
		}
		retry, err := w.post(ctx, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("%w: %w", ErrDelivery, last)
}

// post makes one attempt; retry says whether another may succeed.
func (w *webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header = w.headers.Clone()
	res, err := w.client.Do(req)
	if err != nil {
		// The URL may hold a secret token: report the cause without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, maxDrain))
	res.Body.Close()
	switch c := res.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("%w: %d", ErrStatus, c)
	default:
		return false, fmt.Errorf("%w: %d", ErrStatus, c)
	}
}
