package function

import (
	"encoding/json"
	"net/http"
	"sync"
)

// Temperature is the value of a temperature row.
type Temperature struct {
	Value float64 `json:"value"`
}

// Average is the moving average so far.
type Average struct {
	Average float64 `json:"average"`
}

// The state lives in this instance's memory (stack.yml keeps one replica).
var (
	lock    sync.Mutex
	count   int
	average float64
)

// Handle folds a temperature into the moving average.
func Handle(w http.ResponseWriter, r *http.Request) {
	defer r.Body.Close()
	var temperature Temperature
	if err := json.NewDecoder(r.Body).Decode(&temperature); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	lock.Lock()
	average = (temperature.Value + float64(count)*average) / float64(count+1)
	count++
	result := Average{Average: average}
	lock.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(result)
}
