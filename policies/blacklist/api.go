package blacklist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxBody bounds a POST body.
const maxBody = 4096

// AddRequest is the body of POST /blacklist.
type AddRequest struct {
	// Key is an address or a CIDR prefix.
	Key string `json:"key"`
	// Duration is a Go duration ("90s", "1h"); empty: block_time.
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (s *Stage) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blacklist", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.List())
	})
	mux.HandleFunc("POST /blacklist", s.servePost)
	mux.HandleFunc("DELETE /blacklist/{key...}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Remove(r.PathValue("key")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (s *Stage) servePost(w http.ResponseWriter, r *http.Request) {
	req, err := decodeAdd(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	var d time.Duration
	if req.Duration != "" {
		if d, err = time.ParseDuration(req.Duration); err != nil || d <= 0 {
			writeError(w, fmt.Errorf("%w: must be a positive Go duration like 90s or 1h, got %q", ErrBadDuration, req.Duration))
			return
		}
	}
	b, err := s.add(req.Key, d, req.Reason)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, b)
}

// decodeAdd decodes one JSON object with known fields only.
func decodeAdd(r io.Reader) (AddRequest, error) {
	var req AddRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return AddRequest{}, fmt.Errorf("blacklist: body must be one JSON object {\"key\", \"duration\", \"reason\"}: %w", err)
	}
	if dec.More() {
		return AddRequest{}, errors.New("blacklist: body must be one JSON object")
	}
	return req, nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadKey), errors.Is(err, ErrBadDuration), errors.Is(err, ErrBadReason):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotBlocked):
		code = http.StatusNotFound
	case errors.Is(err, ErrFull), errors.Is(err, ErrClosed):
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, errorBody{err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
