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
// name>/cpu) whose number, in percent, the fake reports as the server's CPU
// use. Without it the machine is idle (0). Tests write it to make a machine
// look busy; on Hetzner the value is measured.
const CPUFile = "cpu"

// maxMetricPoints bounds one time series, as Hetzner coarsens the step of
// long periods.
const maxMetricPoints = 1000

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
	step := max(1, span/100)
	if s := q.Get("step"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeInvalid(w, "step", "step must be a positive number of seconds")
			return
		}
		step = n
	}
	if span/step+1 > maxMetricPoints {
		step = span/(maxMetricPoints-1) + 1
	}

	c.mu.Lock()
	s := c.st.server(id)
	var dir string
	if s != nil {
		dir = c.machineDir(s.Name)
	}
	c.mu.Unlock()
	if s == nil {
		writeNotFound(w, "server", id)
		return
	}
	cpu := c.readCPU(dir)

	series := map[string]metricSeriesJSON{}
	for _, t := range types {
		value := "0"
		if t == "cpu" {
			value = strconv.FormatFloat(cpu, 'f', -1, 64)
		}
		for _, name := range metricSeries[t] {
			var values [][2]any
			for ts := start.Unix(); ts <= end.Unix(); ts += step {
				values = append(values, [2]any{float64(ts), value})
			}
			series[name] = metricSeriesJSON{Values: values}
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Metrics metricsJSON `json:"metrics"`
	}{metricsJSON{Start: start.UTC(), End: end.UTC(), Step: step, TimeSeries: series}})
}

// readCPU reads the machine's CPU file; missing or unreadable means idle.
func (c *Cloud) readCPU(dir string) float64 {
	b, err := os.ReadFile(filepath.Join(dir, CPUFile))
	if err != nil {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		c.log.Warn("cpu file does not hold a percentage; reporting 0", "file", filepath.Join(dir, CPUFile))
		return 0
	}
	return v
}
