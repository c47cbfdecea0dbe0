package bootstrap

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"golang.org/x/crypto/ssh"
)

// bigRSAKey is the largest RSA public key OpenSSH accepts (16384 bits).
// Only its size matters here, so the modulus is random rather than the
// product of two primes, which would take minutes to generate.
func bigRSAKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 16384))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, 16383, 1)
	n.SetBit(n, 0, 1)
	k, err := ssh.NewPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	expires := time.Date(2026, 11, 25, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	person, gw := testkit.NewKey(t).Public(), testkit.NewKey(t).Public()
	d, err := New("3f2a9b1c0d", "cc-3f2a9b1c0d", "claude", expires, 22, []ssh.PublicKey{person, gw}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if back.ExpiresAt != "2026-11-25T11:00:00Z" {
		t.Errorf("expires_at = %q, want UTC RFC 3339", back.ExpiresAt)
	}
	if len(back.AuthorizedKeys) != 2 || back.AuthorizedKeys[0] != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(person))) {
		t.Errorf("authorized keys = %q", back.AuthorizedKeys)
	}
	noExpiry, err := New("a1", "cc-a1", "claude", time.Time{}, 22, []ssh.PublicKey{person}, testkit.NewKey(t).PEM)
	if err != nil || noExpiry.ExpiresAt != "never" {
		t.Errorf("zero expiry: %q, %v; want \"never\"", noExpiry.ExpiresAt, err)
	}
}

func TestWorstCaseFitsUserData(t *testing.T) {
	d, err := New(strings.Repeat("a", 63), strings.Repeat("b", 63), strings.Repeat("u", 32),
		time.Now(), 65535, []ssh.PublicKey{bigRSAKey(t), bigRSAKey(t)}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst case document: %d of %d bytes", len(out), MaxSize)
}

func TestRenderRefusesOversized(t *testing.T) {
	keys := make([]ssh.PublicKey, 20)
	for i := range keys {
		keys[i] = bigRSAKey(t)
	}
	d, err := New("a1", "cc-a1", "claude", time.Now(), 22, keys, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Render(); err == nil || !strings.Contains(err.Error(), "user_data limit") {
		t.Fatalf("Render of %d keys: err = %v, want the size limit named", len(keys), err)
	}
}

func TestParseRejectsHostileInput(t *testing.T) {
	good, err := New("a1", "cc-a1", "claude", time.Now(), 22, []ssh.PublicKey{testkit.NewKey(t).Public()}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	key := good.AuthorizedKeys[0]
	tests := map[string]func(d *Document){
		"comment with shell metacharacters": func(d *Document) { d.AuthorizedKeys[0] = key + " $(reboot);`id`" },
		"newline smuggling a second key":    func(d *Document) { d.AuthorizedKeys[0] = key + "\n" + key },
		"authorized_keys options":           func(d *Document) { d.AuthorizedKeys[0] = `command="/bin/sh" ` + key },
		"not a key":                         func(d *Document) { d.AuthorizedKeys[0] = "rm -rf /" },
		"user with a slash":                 func(d *Document) { d.User = "../root" },
		"instance id with a space":          func(d *Document) { d.InstanceID = "a b" },
		"hostname with a dollar":            func(d *Document) { d.Hostname = "cc-$(id)" },
		"expiry that is not a time":         func(d *Document) { d.ExpiresAt = "tomorrow; reboot" },
		"mismatched host key halves":        func(d *Document) { d.HostKey.Public = key },
		"wrong version":                     func(d *Document) { d.Version = 2 },
		"port out of range":                 func(d *Document) { d.SSHPort = 70000 },
		"no keys":                           func(d *Document) { d.AuthorizedKeys = nil },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			d := good
			d.AuthorizedKeys = append([]string(nil), good.AuthorizedKeys...)
			mutate(&d)
			if _, err := d.Render(); err == nil {
				t.Error("Render accepted it")
			}
		})
	}

	if _, err := Parse([]byte(`{"version":1,"surprise":true}`)); err == nil {
		t.Error("Parse accepted an unknown field")
	}
	if _, err := Parse(make([]byte, MaxSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Parse of an oversized document: %v", err)
	}
}

func TestNewDropsKeyComments(t *testing.T) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(testkit.NewKey(t).Public()))) + " evil $(reboot)"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New("a1", "cc-a1", "claude", time.Now(), 22, []ssh.PublicKey{k}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.AuthorizedKeys[0], "reboot") {
		t.Errorf("comment reached the document: %q", d.AuthorizedKeys[0])
	}
}

// TestHomeDevice: the home device reaches mkfs and mount as root on the
// machine, so only the one path Hetzner gives an attached volume passes.
func TestHomeDevice(t *testing.T) {
	good, err := New("a1", "cc-a1", "claude", time.Now(), 22, []ssh.PublicKey{testkit.NewKey(t).Public()}, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		device string
		pool   bool
		ok     bool
	}{
		{device: "", ok: true},
		{device: "", pool: true, ok: true},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_1", ok: true},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_102938475", ok: true},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_9223372036854775807", ok: true},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_102938475", pool: true},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_0"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_012"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_12345678901234567890"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_12 /dev/sda"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_12\n"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_12/../../../sda"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_-1"},
		{device: "/dev/disk/by-id/scsi-0HC_Volume_$(reboot)"},
		{device: "/dev/sda"},
		{device: "/dev/sdb1"},
		{device: "dev/disk/by-id/scsi-0HC_Volume_12"},
		{device: "/dev/disk/by-id/../../sda"},
		{device: "-o remount /dev/disk/by-id/scsi-0HC_Volume_12"},
	}
	for _, tt := range tests {
		d := good
		d.HomeDevice, d.Pool = tt.device, tt.pool
		_, err := d.Render()
		if tt.ok && err != nil {
			t.Errorf("home device %q (pool %t): %v", tt.device, tt.pool, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "home device")) {
			t.Errorf("home device %q (pool %t): err = %v, want it refused, naming the home device", tt.device, tt.pool, err)
		}
	}

	d := good
	d.HomeDevice = "/dev/disk/by-id/scsi-0HC_Volume_42"
	out, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"home_device":"/dev/disk/by-id/scsi-0HC_Volume_42"`) {
		t.Errorf("rendered %s, want the home_device field", out)
	}
	back, err := Parse([]byte(out))
	if err != nil || back.HomeDevice != d.HomeDevice {
		t.Errorf("parsed home device %q, %v; want %q", back.HomeDevice, err, d.HomeDevice)
	}
	if out, err := good.Render(); err != nil || strings.Contains(out, "home_device") {
		t.Errorf("a document without a home device renders %s, %v; want no home_device field", out, err)
	}
}
