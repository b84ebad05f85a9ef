// regcred-kstatus computes the kstatus of Kubernetes objects with the library Flux, kpt and
// `kubectl wait`-style tooling use (sigs.k8s.io/cli-utils/pkg/kstatus/status), so tests can show
// what those tools conclude about a RegistryCredential from the status the operator wrote.
//
// Usage: regcred-kstatus [--want STATUS] [FILE|-]...
//
// Each input (a file, or stdin when none or "-") is a stream of JSON or YAML documents; each
// document is one object or a List (`items`). For every object one JSON line is printed:
//
//	{"kind":"RegistryCredential","namespace":"","name":"rc","generation":2,"observedGeneration":1,
//	 "status":"InProgress","message":"...","conditions":[{"type":"Reconciling",...}]}
//
// Exit 0 when every object was computed (and, with --want, every status equals STATUS);
// 1 when --want did not hold; 2 on unreadable input or a computation error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// line is one object's result; field order is the output's key order.
type line struct {
	APIVersion         string             `json:"apiVersion,omitempty"`
	Kind               string             `json:"kind"`
	Namespace          string             `json:"namespace"`
	Name               string             `json:"name"`
	Generation         *int64             `json:"generation,omitempty"`
	ObservedGeneration *int64             `json:"observedGeneration,omitempty"`
	Status             string             `json:"status"`
	Message            string             `json:"message"`
	Conditions         []status.Condition `json:"conditions"`
}

func main() {
	want := flag.String("want", "", "exit 1 unless every object's status is this (Current, InProgress, Failed, Terminating, Unknown)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: regcred-kstatus [--want STATUS] [FILE|-]...")
		flag.PrintDefaults()
	}
	flag.Parse()
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	mismatch := false
	for _, input := range inputs {
		objects, err := read(input)
		if err != nil {
			out.Flush()
			fmt.Fprintf(os.Stderr, "regcred-kstatus: %s: %v\n", input, err)
			os.Exit(2)
		}
		for _, obj := range objects {
			l, err := compute(obj)
			if err != nil {
				out.Flush()
				fmt.Fprintf(os.Stderr, "regcred-kstatus: %s: %s %s: %v\n", input, obj.GetKind(), obj.GetName(), err)
				os.Exit(2)
			}
			b, _ := json.Marshal(l)
			out.Write(append(b, '\n'))
			if *want != "" && l.Status != *want {
				mismatch = true
			}
		}
	}
	if mismatch {
		out.Flush()
		fmt.Fprintf(os.Stderr, "regcred-kstatus: not every object is %s\n", *want)
		os.Exit(1)
	}
}

// read returns the objects of every document in input, Lists flattened.
func read(input string) ([]*unstructured.Unstructured, error) {
	var r io.Reader = os.Stdin
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var objects []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue // an empty YAML document
		}
		// Numbers as the API machinery reads them (int64 when integral), which kstatus expects.
		var m map[string]interface{}
		if err := utiljson.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() || strings.HasSuffix(u.GetKind(), "List") {
			items, _, err := unstructured.NestedSlice(m, "items")
			if err != nil {
				return nil, fmt.Errorf("document %d: items: %w", doc, err)
			}
			for i, item := range items {
				im, ok := item.(map[string]interface{})
				if !ok {
					return nil, fmt.Errorf("document %d: items[%d] is not an object", doc, i)
				}
				objects = append(objects, &unstructured.Unstructured{Object: im})
			}
			continue
		}
		objects = append(objects, u)
	}
	return objects, nil
}

func compute(u *unstructured.Unstructured) (line, error) {
	res, err := status.Compute(u)
	if err != nil {
		return line{}, err
	}
	l := line{
		APIVersion: u.GetAPIVersion(),
		Kind:       u.GetKind(),
		Namespace:  u.GetNamespace(),
		Name:       u.GetName(),
		Status:     res.Status.String(),
		Message:    res.Message,
		Conditions: res.Conditions,
	}
	if g, found, _ := unstructured.NestedInt64(u.Object, "metadata", "generation"); found {
		l.Generation = &g
	}
	if g, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); found {
		l.ObservedGeneration = &g
	}
	if l.Conditions == nil {
		l.Conditions = []status.Condition{}
	}
	return l, nil
}
