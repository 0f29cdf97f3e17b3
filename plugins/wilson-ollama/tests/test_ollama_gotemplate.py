"""The Go text/template evaluator follows Go's documented semantics (the ones TEMPLATEs use)."""

from __future__ import annotations

import pytest
from wilson_ollama.gotemplate import GoNamed, GoStruct, TemplateError, render


def test_trim_markers_remove_all_adjacent_whitespace_and_only_that():
    assert render("a \n\t {{- .X -}} \n b", {"X": "x"}) == "axb"
    assert render("a {{ .X }} b", {"X": "x"}) == "a x b"
    assert render("{{/* a comment */}}a", {}) == "a"


def test_if_else_if_chains_pick_the_first_true_branch():
    tpl = '{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else if eq .N 3 }}three{{ else }}many{{ end }}'
    assert [render(tpl, {"N": n}) for n in (1, 2, 3, 4)] == ["one", "two", "three", "many"]


def test_truth_follows_go_empty_values_are_false_structs_are_true():
    tpl = "{{ if . }}T{{ else }}F{{ end }}"
    assert [render(tpl, v) for v in ("", "x", 0, 1, [], [0], {}, {"a": 1}, None, False)] == list("FTFTFTFTFF")
    assert render(tpl, GoStruct("api.Message")) == "T"


def test_range_over_a_map_goes_in_sorted_key_order_and_else_runs_when_empty():
    assert render("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}", {"b": "2", "a": "1", "c": "3"}) == "a=1;b=2;c=3;"
    assert render("{{ range . }}x{{ else }}empty{{ end }}", []) == "empty"
    assert render("{{ range $i, $v := . }}{{ $i }}{{ $v }}{{ end }}", ["a", "b"]) == "0a1b"


def test_variables_are_block_scoped_and_assignment_reaches_the_outer_one():
    tpl = '{{ $x := "outer" }}{{ range . }}{{ $x = . }}{{ $y := "in" }}{{ end }}{{ $x }}'
    assert render(tpl, ["a", "b"]) == "b"
    with pytest.raises(TemplateError, match="undefined variable"):
        render('{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}', {})


def test_missing_map_keys_print_no_value_but_missing_struct_fields_are_errors():
    assert render("{{ .Nope }}", {"A": 1}) == "<no value>"
    with pytest.raises(TemplateError, match="can't evaluate field Nope in type api.Message"):
        render("{{ .Nope }}", GoStruct("api.Message", Role="user"))


def test_and_or_short_circuit_and_return_an_operand():
    assert render('{{ or .A "fallback" }}', {"A": ""}) == "fallback"
    assert render('{{ and .A "second" }}', {"A": "first"}) == "second"
    assert render('{{ and .A .Missing.Deeper }}', {"A": ""}) == ""


def test_functions_len_index_slice_eq_printf():
    data = {"L": ["a", "b", "c"], "S": 'say "hi"\n'}
    assert render("{{ len .L }} {{ index .L 1 }} {{ len (slice .L 1) }}", data) == "3 b 2"
    assert render('{{ eq (index .L 0) "x" "a" }}', data) == "true"
    assert render('{{ printf "%q" .S }}', data) == '"say \\"hi\\"\\n"'
    assert render('{{ printf "%T %T %T" .L .S 1.5 }}', data) == "[]interface {} string float64"
    assert render("{{ 3 }} {{ 2.0 }}", {}) == "3 2"


def test_json_is_go_json_marshal():
    value = {"b": 1.0, "a": "<tag> & \u2028 é", "c": [True, None, 2.5]}
    assert render("{{ json . }}", value) == '{"a":"\\u003ctag\\u003e \\u0026 \\u2028 é","b":1,"c":[true,null,2.5]}'
    named = GoNamed("api.PropertyType", ["string"], marshal=lambda v: v[0])
    assert render("{{ json . }} {{ printf \"%T\" . }}", named) == '"string" api.PropertyType'


def test_define_and_template_recurse():
    tpl = ('{{ define "t" }}({{ range . }}{{ if eq (printf "%T" .) "[]interface {}" }}{{ template "t" . }}'
           '{{ else }}{{ . }}{{ end }}{{ end }}){{ end }}{{ template "t" . }}')
    assert render(tpl, ["a", ["b", ["c"]], "d"]) == "(a(b(c))d)"


def test_malformed_templates_are_errors():
    for bad in ("{{ if .A }}x", "{{ end }}", "{{ .A ", "{{ nosuchfunc 1 }}", '{{ template "missing" }}'):
        with pytest.raises(TemplateError):
            render(bad, {"A": 1})
