package localcloud

import (
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUFile names the file in a machine's folder (DataDir/machines/<server
// name>/cpu) that holds the machine's CPU use in percent of the whole
// machine (0 to 100). Without it the machine is idle (0). Tests write it to
// make a machine look busy; on Hetzner the value is measured.
//
// The API reports it as Hetzner does: per vCPU, not normalised, so 100 is
// one busy vCPU and a busy 2-vCPU machine reports 200.
const CPUFile = "cpu"

// Hetzner's sample counts: without a step it picks one that gives at most
// defaultMetricPoints samples, and it coarsens any step that would give
// more than maxMetricPoints.
const (
	defaultMetricPoints = 200
	maxMetricPoints     = 500
)

type metricSeriesJSON struct {
	Values [][2]any `json:"values"`
}

type metricsJSON struct {
	Start      time.Time                   `json:"start"`
	End        time.Time                   `json:"end"`
	Step       int64                       `json:"step"`
	TimeSeries map[string]metricSeriesJSON `json:"time_series"`
}

// The series Hetzner names for each metric type; the fake reports zero for
// all but cpu.
var metricSeries = map[string][]string{
	"cpu":     {"cpu"},
	"disk":    {"disk.0.iops.read", "disk.0.iops.write", "disk.0.bandwidth.read", "disk.0.bandwidth.write"},
	"network": {"network.0.pps.in", "network.0.pps.out", "network.0.bandwidth.in", "network.0.bandwidth.out"},
}

// GET /servers/{id}/metrics?type=cpu&start=…&end=…&step=…
func (c *Cloud) serverMetrics(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	q := r.URL.Query()
	var types []string
	for _, t := range q["type"] {
		for _, one := range strings.Split(t, ",") {
			if _, known := metricSeries[one]; !known {
				writeInvalid(w, "type", "type must be cpu, disk or network")
				return
			}
			types = append(types, one)
		}
	}
	if len(types) == 0 {
		writeInvalid(w, "type", "type is required")
		return
	}
	start, err := time.Parse(time.RFC3339, q.Get("start"))
	if err != nil {
		writeInvalid(w, "start", "start must be an RFC 3339 time")
		return
	}
	end, err := time.Parse(time.RFC3339, q.Get("end"))
	if err != nil {
		writeInvalid(w, "end", "end must be an RFC 3339 time")
		return
	}
	if !end.After(start) {
		writeInvalid(w, "end", "end must be after start")
		return
	}
	span := int64(end.Sub(start) / time.Second)
	step := stepFor(span, defaultMetricPoints)
	if s := q.Get("step"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeInvalid(w, "step", "step must be a positive number of seconds")
			return
		}
		step = max(n, stepFor(span, maxMetricPoints))
	}

	c.mu.Lock()
	s := c.st.server(id)
	var dir string
	var cores int
	booted, running := c.booted[id]
	if s != nil {
		dir = c.machineDir(s.Name)
		t, _ := findServerType(s.ServerType)
		cores = t.cores
	}
	c.mu.Unlock()
	if s == nil {
		writeNotFound(w, "server", id)
		return
	}
	cpu := c.readCPU(dir) * float64(cores)

	// A machine has figures only since it last booted: the samples of a
	// window reaching back before that are missing, and a machine that is
	// off has none.
	var stamps []int64
	for ts := start.Unix(); running && ts <= end.Unix(); ts += step {
		if ts >= booted.Unix() {
			stamps = append(stamps, ts)
		}
	}
	series := map[string]metricSeriesJSON{}
	for _, t := range types {
		value := "0"
		if t == "cpu" {
			value = strconv.FormatFloat(cpu, 'f', -1, 64)
		}
		for _, name := range metricSeries[t] {
			values := [][2]any{}
			for _, ts := range stamps {
				values = append(values, [2]any{float64(ts), value})
			}
			series[name] = metricSeriesJSON{Values: values}
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Metrics metricsJSON `json:"metrics"`
	}{metricsJSON{Start: start.UTC(), End: end.UTC(), Step: step, TimeSeries: series}})
}

// stepFor is the smallest step, in seconds, that cuts span into at most
// points samples.
func stepFor(span, points int64) int64 {
	return max(1, (span+points-2)/(points-1))
}

// readCPU reads the machine's CPU file; missing or unreadable means idle.
func (c *Cloud) readCPU(dir string) float64 {
	b, err := os.ReadFile(filepath.Join(dir, CPUFile))
	if err != nil {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || v < 0 || v > 100 || math.IsNaN(v) {
		c.log.Warn("cpu file does not hold a percentage; reporting 0", "file", filepath.Join(dir, CPUFile))
		return 0
	}
	return v
}
