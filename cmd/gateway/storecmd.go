package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cc-gateway/cc-gateway/internal/config"
	"github.com/cc-gateway/cc-gateway/internal/store/dump"
)

const storeUsage = `Usage:
  gateway store export [--out FILE] [gateway options]
  gateway store import [--in FILE] [--force] [gateway options]

Export writes everything the lease store keeps (leases, people, the warm pool,
the audit log and refusal counts) as one JSON document, to FILE (created with
mode 0600: it holds machines' host keys and sealed secrets) or stdout. Import
replaces a store's content with such a document, from FILE or stdin; it refuses
a store that holds anything unless --force. The store is the gateway's: the
bbolt database in --data-dir, or etcd with --etcd-endpoints (see gateway --help).
Stop the gateways using the store first.
`

// runStore is `gateway store export|import`; it returns the exit status.
func runStore(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "gateway store: "+format+"\n", a...)
		return code
	}
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
			fmt.Fprint(stdout, storeUsage)
			return 0
		}
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	export, rest := args[0] == "export", args[1:]
	var file string
	var force bool
	var err error
	if export {
		file, rest, err = takeValue(rest, "out")
	} else {
		file, rest, err = takeValue(rest, "in")
		if err == nil {
			force, rest = takeSwitch(rest, "force")
		}
	}
	if err != nil {
		return fail(2, "%v", err)
	}
	cfg, err := config.Load(rest, getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		return fail(2, "%v", err)
	}
	var d dump.Document
	if !export { // a document that will not do is refused before any store opens
		if d, err = readDocument(file, stdin); err != nil {
			return fail(1, "%v", err)
		}
	}
	store, err := openStore(cfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	defer store.Close()
	if export {
		err = exportStore(store, file, stdout, stderr)
	} else {
		err = importStore(store, d, force, stdout)
	}
	if err != nil {
		return fail(1, "%s: %v", storeName(cfg), err)
	}
	return 0
}

// dumpable is what export and import ask of a store.
type dumpable interface {
	Export() (dump.Document, error)
	Import(dump.Document) error
}

func exportStore(store dumpable, file string, stdout, stderr io.Writer) error {
	d, err := store.Export()
	if err != nil {
		return err
	}
	if file == "" {
		return dump.Write(stdout, d)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("export: %w (it is never overwritten; choose a new file)", err)
	}
	if err := dump.Write(f, d); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stderr, "exported %s to %s\n", d.Summary(), file)
	return nil
}

// readDocument reads the document to import from file, or stdin.
func readDocument(file string, stdin io.Reader) (dump.Document, error) {
	if file == "" {
		return dump.Read(stdin)
	}
	f, err := os.Open(file)
	if err != nil {
		return dump.Document{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	return dump.Read(f)
}

func importStore(store dumpable, d dump.Document, force bool, stdout io.Writer) error {
	current, err := store.Export()
	if err != nil {
		return err
	}
	if !current.Empty() && !force {
		return fmt.Errorf("import: the store holds %s, which the import would replace; give --force to replace them", current.Summary())
	}
	if err := store.Import(d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s\n", d.Summary())
	return nil
}

// takeValue removes --name VALUE (or --name=VALUE, one dash or two) from
// args and returns VALUE ("" when absent).
func takeValue(args []string, name string) (string, []string, error) {
	var value string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-")
		switch {
		case a == name:
			if i+1 == len(args) {
				return "", nil, fmt.Errorf("--%s needs a file", name)
			}
			value = args[i+1]
			i++
		case strings.HasPrefix(a, name+"="):
			value = strings.TrimPrefix(a, name+"=")
		default:
			rest = append(rest, args[i])
		}
	}
	return value, rest, nil
}

// takeSwitch removes --name from args and reports whether it was there.
func takeSwitch(args []string, name string) (bool, []string) {
	var on bool
	var rest []string
	for _, a := range args {
		if strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-") == name {
			on = true
			continue
		}
		rest = append(rest, a)
	}
	return on, rest
}
