// Command celcost evaluates admission match conditions with kube-apiserver's own condition
// compiler, environment and evaluator (k8s.io/apiserver), on inputs read from stdin, and prints
// each condition's CEL cost (the units the API server's budget counts) and time per evaluation.
//
// The webhook's benchmark runs it on kubernaut's real writes: it reads the same figure the API
// server would spend, without a cluster, and evaluation errors are counted, not hidden.
//
// With compatibilityVersion set it only compiles, as an API server whose oldest compatible
// version that is checks a new webhook configuration, and prints each condition's error, if any.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
)

type input struct {
	User      string         `json:"user"`
	Object    map[string]any `json:"object"`
	OldObject map[string]any `json:"oldObject"`
}

type job struct {
	Conditions []admissionregistrationv1.MatchCondition `json:"conditions"`
	Inputs     []input                                  `json:"inputs"`
	// Rounds over all inputs, for a steadier time.
	Rounds int `json:"rounds"`
	// "1.32": compile the conditions as new expressions in that version's environment, and
	// evaluate nothing.
	CompatibilityVersion string `json:"compatibilityVersion,omitempty"`
	// Report each input's answer, so that a caller can check what a condition skips.
	Answers bool `json:"answers,omitempty"`
}

type compiled struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
}

type figures struct {
	Name        string  `json:"name"`
	Evaluations int     `json:"evaluations"`
	True        int     `json:"true"`
	Errors      int     `json:"errors"`
	MeanCost    float64 `json:"meanCost"`
	MaxCost     int64   `json:"maxCost"`
	MeanMicros  float64 `json:"meanMicros"`
	FirstError  string  `json:"firstError,omitempty"`
	// With answers set: each input's answer in the first round, "true", "false" or "error".
	Answers []string `json:"answers,omitempty"`
}

func main() {
	var j job
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		fail("reading the job: %v", err)
	}
	if j.Rounds < 1 {
		j.Rounds = 1
	}
	if j.CompatibilityVersion != "" {
		compile(j)
		return
	}
	compiler := cel.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	gvk := schema.GroupVersionKind{Group: "kubernaut.ai", Version: "v1alpha1", Kind: "WorkflowExecution"}
	gvr := schema.GroupVersionResource{Group: "kubernaut.ai", Version: "v1alpha1", Resource: "workflowexecutions"}
	out := make([]figures, 0, len(j.Conditions))
	for _, c := range j.Conditions {
		eval := compileCondition(compiler, c, environment.StoredExpressions)
		if errs := eval.CompilationErrors(); len(errs) > 0 {
			fail("%s does not compile: %v", c.Name, errs)
		}
		f := figures{Name: c.Name}
		var cost int64
		var took time.Duration
		for r := 0; r < j.Rounds; r++ {
			for _, in := range j.Inputs {
				obj := &unstructured.Unstructured{Object: in.Object}
				old := &unstructured.Unstructured{Object: in.OldObject}
				attr := admission.NewAttributesRecord(obj, old, gvk, "bench", "wfe", gvr, "status",
					admission.Update, &metav1.UpdateOptions{}, false, &user.DefaultInfo{Name: in.User})
				versioned := &admission.VersionedAttributes{Attributes: attr, VersionedKind: gvk,
					VersionedObject: admission.NewLazyObject(obj), VersionedOldObject: admission.NewLazyObject(old)}
				request := cel.CreateAdmissionRequest(attr, metav1.GroupVersionResource(gvr), metav1.GroupVersionKind(gvk))
				start := time.Now()
				results, remaining, err := eval.ForInput(context.Background(), versioned, request,
					cel.OptionalVariableBindings{}, nil, celconfig.RuntimeCELCostBudget)
				took += time.Since(start)
				f.Evaluations++
				answer := "error"
				spent := celconfig.RuntimeCELCostBudget - remaining
				cost += spent
				if spent > f.MaxCost {
					f.MaxCost = spent
				}
				switch {
				case err != nil:
					f.Errors++
					f.FirstError = first(f.FirstError, err.Error())
				case len(results) != 1 || results[0].Error != nil:
					f.Errors++
					if len(results) == 1 {
						f.FirstError = first(f.FirstError, results[0].Error.Error())
					}
				case results[0].EvalResult.Value() == true:
					f.True++
					answer = "true"
				default:
					answer = "false"
				}
				if j.Answers && r == 0 {
					f.Answers = append(f.Answers, answer)
				}
			}
		}
		if f.Evaluations > 0 {
			f.MeanCost = float64(cost) / float64(f.Evaluations)
			f.MeanMicros = float64(took.Microseconds()) / float64(f.Evaluations)
		}
		out = append(out, f)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing the figures: %v", err)
	}
}

// compileCondition compiles c as the webhook accessors do: no params, an authorizer.
func compileCondition(compiler cel.ConditionCompiler, c admissionregistrationv1.MatchCondition, mode environment.Type) cel.ConditionEvaluator {
	mc := matchconditions.MatchCondition(c)
	return compiler.CompileCondition([]cel.ExpressionAccessor{&mc},
		cel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}, mode)
}

// compile checks each condition as the API server checks one in a webhook configuration it is
// asked to create: new expressions, in the environment of its oldest compatible version.
func compile(j job) {
	ver, err := version.ParseMajorMinor(j.CompatibilityVersion)
	if err != nil {
		fail("compatibilityVersion %q: %v", j.CompatibilityVersion, err)
	}
	compiler := cel.NewConditionCompiler(environment.MustBaseEnvSet(ver))
	out := make([]compiled, 0, len(j.Conditions))
	for _, c := range j.Conditions {
		r := compiled{Name: c.Name}
		if errs := compileCondition(compiler, c, environment.NewExpressions).CompilationErrors(); len(errs) > 0 {
			r.Error = errors.Join(errs...).Error()
		}
		out = append(out, r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing the results: %v", err)
	}
}

func first(had, err string) string {
	if had != "" {
		return had
	}
	return err
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "celcost: "+format+"\n", args...)
	os.Exit(1)
}
