// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) of Kubernetes
// objects, the same computation Flux, Argo-style waiters and `kubectl wait`-like tools build on. The tests use it to
// check that the operator's resources report their state in the standard way.
//
// It reads JSON from stdin: one object, a JSON array of objects, a List (`kubectl get -o json`) or several of
// these one after another. Lists nest. For each object, in input order, it prints one JSON line:
//
//	{"kind":"ConfigMap","namespace":"d","name":"x","status":"Current","message":"Resource is always ready"}
//
// status is one of InProgress, Failed, Current, Terminating, NotFound, Unknown. An object kstatus cannot judge (a
// malformed field, say) gets "Unknown" with the error as its message; that is not an exit failure. Input that is
// not JSON, or a JSON value that is not an object, exits 1 with the reason on stderr. Build it with
// scripts/test-tools.sh.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// line is one output record; the field order is the output's.
type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < objects.json  (one object, an array of them, or a List; see the source)")
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	err := run(os.Stdin, out)
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for n := 0; ; n++ {
		var doc json.RawMessage
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			if n == 0 {
				return errors.New("no input (expected a JSON object, array or List on stdin)")
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("reading JSON document %d: %w", n+1, err)
		}
		if err := emit(doc, fmt.Sprintf("document %d", n+1), enc); err != nil {
			return err
		}
	}
}

// emit prints the verdict of every object in doc (an object, an array or a List); where names it in errors.
func emit(doc json.RawMessage, where string, enc *json.Encoder) error {
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for i, item := range items {
			if err := emit(item, fmt.Sprintf("%s[%d]", where, i), enc); err != nil {
				return err
			}
		}
		return nil
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%s: expected a JSON object or array, got %.40s", where, trimmed)
	}
	// k8s.io/apimachinery's decoder keeps integers as int64, which unstructured's accessors (and so kstatus'
	// generation checks) require; encoding/json would make them float64.
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(trimmed, &obj); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if items, ok := obj["items"].([]interface{}); ok && strings.HasSuffix(u.GetKind(), "List") {
		for i, item := range items {
			raw, err := json.Marshal(item)
			if err != nil {
				return fmt.Errorf("%s.items[%d]: %w", where, i, err)
			}
			if err := emit(raw, fmt.Sprintf("%s.items[%d]", where, i), enc); err != nil {
				return err
			}
		}
		return nil
	}
	l := line{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
	if res, err := status.Compute(u); err != nil {
		l.Status, l.Message = status.UnknownStatus.String(), err.Error()
	} else {
		l.Status, l.Message = res.Status.String(), res.Message
	}
	return enc.Encode(l)
}
