{{/*
One PromQL series selector: dict "name" metric "matchers" (list `label="value"` ...) "selector"
the release's matchers (monitoring.prometheusRule.seriesSelector, rendered). `name{a,b}`, or the
bare name when there is no matcher.
*/}}
{{- define "recsys.promql.series" -}}
{{- $matchers := concat (default list .matchers) (list (trim (default "" .selector))) | compact -}}
{{- if $matchers -}}
{{- printf "%s{%s}" .name (join "," $matchers) -}}
{{- else -}}
{{- .name -}}
{{- end -}}
{{- end -}}
