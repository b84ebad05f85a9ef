// Command kubelet-oracle answers, with the kubelet's own code, which credentials of a pull
// secret the kubelet hands to the container runtime for an image. It is a test oracle for the
// normalizer of regcred-operator (tests/kubelet_differential.rs), built by build.sh in this
// directory against the control plane's pinned Kubernetes release.
//
// Input (stdin): a JSON array of cases
//
//	[{"type": "dockerconfigjson" | "dockercfg", "config": "<secret data as text>", "images": ["nginx", ...]}]
//
// Output (stdout): a JSON array with one element per case, in order:
//
//	{"error": "<the keyring could not be built>"}   or
//	{"images": [{"lookup": "<string given to Lookup>", "creds": [{"username": .., "password": ..}]}
//	            | {"error": "<image rejected>"}]}
//
// The lookup string is formed as pkg/kubelet/images/image_manager.go forms it: the default tag is
// applied to the image as written in the Pod (applyDefaultImageTag), then the repository name is
// taken with parsers.ParseImageName, and the keyring comes from secrets.MakeDockerKeyring.
// Credentials are echoed back so the caller can tell which entry each came from: feed it fake
// credentials only. The kubelet's own logging is discarded (it may quote keys).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type request struct {
	Type   string   `json:"type"`
	Config string   `json:"config"`
	Images []string `json:"images"`
}

type cred struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type imageAnswer struct {
	Lookup string `json:"lookup,omitempty"`
	Creds  []cred `json:"creds"`
	Error  string `json:"error,omitempty"`
}

type answer struct {
	Error  string        `json:"error,omitempty"`
	Images []imageAnswer `json:"images,omitempty"`
}

// defaultImageTag is applyDefaultImageTag of pkg/kubelet/images (unexported there): the tag
// ParseImageName defaults to is appended when the image names neither tag nor digest.
func defaultImageTag(image string) (string, error) {
	_, tag, digest, err := parsers.ParseImageName(image)
	if err != nil {
		return "", err
	}
	if len(digest) == 0 && len(tag) > 0 && !strings.HasSuffix(image, ":"+tag) {
		image = image + ":" + tag
	}
	return image, nil
}

func answerOne(req request) answer {
	secret := v1.Secret{}
	secret.Name, secret.Namespace, secret.UID = "pull", "oracle", "00000000-0000-0000-0000-000000000001"
	switch req.Type {
	case "", "dockerconfigjson":
		secret.Type = v1.SecretTypeDockerConfigJson
		secret.Data = map[string][]byte{v1.DockerConfigJsonKey: []byte(req.Config)}
	case "dockercfg":
		secret.Type = v1.SecretTypeDockercfg
		secret.Data = map[string][]byte{v1.DockerConfigKey: []byte(req.Config)}
	default:
		return answer{Error: fmt.Sprintf("unknown type %q", req.Type)}
	}
	// The kubelet passes the node's keyring (and credential plugins) as the default; an
	// empty union stands for a node without credentials of its own.
	keyring, err := secrets.MakeDockerKeyring([]v1.Secret{secret}, credentialprovider.UnionDockerKeyring{})
	if err != nil {
		return answer{Error: "keyring: " + err.Error()}
	}
	out := answer{Images: make([]imageAnswer, 0, len(req.Images))}
	for _, image := range req.Images {
		tagged, err := defaultImageTag(image)
		if err != nil {
			out.Images = append(out.Images, imageAnswer{Error: err.Error(), Creds: []cred{}})
			continue
		}
		repoToPull, _, _, err := parsers.ParseImageName(tagged)
		if err != nil {
			out.Images = append(out.Images, imageAnswer{Error: err.Error(), Creds: []cred{}})
			continue
		}
		found, _ := keyring.Lookup(repoToPull)
		creds := make([]cred, 0, len(found))
		for _, c := range found {
			creds = append(creds, cred{Username: c.Username, Password: c.Password})
		}
		out.Images = append(out.Images, imageAnswer{Lookup: repoToPull, Creds: creds})
	}
	return out
}

func main() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)

	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("kubelet-oracle (pkg/credentialprovider of k8s.io/kubernetes, see go.mod)")
		return
	}
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet-oracle: reading the request: %v\n", err)
		os.Exit(2)
	}
	answers := make([]answer, 0, len(reqs))
	for _, req := range reqs {
		answers = append(answers, answerOne(req))
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet-oracle: writing the answer: %v\n", err)
		os.Exit(1)
	}
}
