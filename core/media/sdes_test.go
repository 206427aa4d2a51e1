package media

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

func TestParseInline(t *testing.T) {
	key30 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 30))
	key28 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 28))
	tests := []struct {
		suite, params string
		mki           []byte
		err           string // empty: parses
	}{
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30, nil, ""},
		{"aes_cm_128_hmac_sha1_32", "inline:" + key30, nil, ""},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + strings.TrimRight(key30, "="), nil, ""},
		{"AEAD_AES_128_GCM", "inline:" + key28, nil, ""},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|2^20", nil, ""},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|1048576|1:4", []byte{0, 0, 0, 1}, ""},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|258:2", []byte{1, 2}, ""},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key28, nil, "key and salt have the wrong length"},
		{"AEAD_AES_128_GCM", "inline:" + key30, nil, "key and salt have the wrong length"},
		{"AES_CM_128_HMAC_SHA1_80", "inline:!!!!", nil, "key is not base64"},
		{"AES_CM_128_HMAC_SHA1_80", "uri:" + key30, nil, `method is not "inline"`},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + ";inline:" + key30, nil, "more than one key"},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|1:5", nil, "mki longer than 4 bytes"},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|256:1", nil, "mki value does not fit its length"},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|2^49", nil, "bad lifetime"},
		{"AES_CM_128_HMAC_SHA1_80", "inline:" + key30 + "|1:1|2^20", nil, "bad field order"},
		{"F8_128_HMAC_SHA1_80", "inline:" + key30, nil, "unsupported srtp crypto suite"},
	}
	for _, tt := range tests {
		t.Run(tt.suite+" "+tt.params, func(t *testing.T) {
			k, err := parseInline(tt.suite, tt.params)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), key30[:8]) {
					t.Fatal("error quotes the key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.mki, tt.mki) {
				t.Fatalf("mki %x, want %x", k.mki, tt.mki)
			}
			if _, _, err := k.contexts(); err != nil {
				t.Fatalf("contexts: %v", err)
			}
		})
	}
}

func TestKeysNeverPrinted(t *testing.T) {
	k, err := newLocalKey(suiteByName("AES_CM_128_HMAC_SHA1_80"))
	if err != nil {
		t.Fatal(err)
	}
	raw := base64.StdEncoding.EncodeToString(k.master)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", *k), fmt.Sprintf("%#v", *k), fmt.Sprintf("%x", k.master), fmt.Sprintf("%s", k.inline)} {
		if strings.Contains(s, raw[:10]) || strings.Contains(s, fmt.Sprintf("%x", []byte(k.master))[:10]) {
			t.Fatalf("key material printed: %s", s)
		}
	}
}

func FuzzParseInline(f *testing.F) {
	key30 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, 30))
	f.Add("AES_CM_128_HMAC_SHA1_80", "inline:"+key30)
	f.Add("AES_CM_128_HMAC_SHA1_32", "inline:"+key30+"|2^20|1:4")
	f.Add("AEAD_AES_128_GCM", "inline:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 28))+"|7:1")
	f.Add("AES_256_CM_HMAC_SHA1_80", "inline:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 46)))
	f.Add("AES_CM_128_HMAC_SHA1_80", "inline:||||")
	f.Add("AES_CM_128_HMAC_SHA1_80", "inline:"+key30+"|:")
	f.Fuzz(func(t *testing.T, suite, params string) {
		k, err := parseInline(suite, params)
		if err != nil {
			return
		}
		if len(k.master) != k.suite.keyLen+k.suite.saltLen || len(k.mki) > maxMKILen {
			t.Fatalf("accepted a %d-byte key with a %d-byte mki", len(k.master), len(k.mki))
		}
		// parse(format(k)) == k
		again, err := parseInline(k.suite.name, k.formatInline())
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !bytes.Equal(again.master, k.master) || !bytes.Equal(again.mki, k.mki) || again.suite != k.suite {
			t.Fatal("format/parse round trip changed the key")
		}
	})
}
