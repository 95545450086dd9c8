// Comfort alerts for one room: fan-in (assess waits for weather) and a service that throws.
// The chain starts from a value: a client posts a Reading to `validate`.
import Dyninka

struct Reading: Codable {
    var room: String
    var celsius: Double
}

struct Weather: Codable {
    var outside: Double
    var condition: String
}

struct Comfort: Codable {
    var room: String
    var celsius: Double
    var outside: Double
    var level: String
}

struct Alert: Codable {
    var room: String
    var message: String
}

struct SensorFault: Error, CustomStringConvertible {
    var description: String
}

@Placed("assess") var assessed = 0

/// Today's weather (fixed here; a real app would ask a weather service).
@Service(label: "zone=roof") func weather() -> Weather {
    Weather(outside: 31.5, condition: "sunny")
}

extension Reading {
    /// Rejects readings no working sensor produces.
    @Service func validate() throws -> Reading {
        guard (-40.0...80.0).contains(celsius) else {
            throw SensorFault(description: "room \(room) reports \(celsius) °C; the sensor is faulty")
        }
        return self
    }

    /// Needs the weather first (a dependency) and a constant threshold.
    @Service func assess(weather: Weather, threshold: Double) -> Comfort {
        assessed += 1
        let level = celsius > threshold || (celsius > threshold - 2 && weather.outside > 30) ? "hot" : "ok"
        return Comfort(room: room, celsius: celsius, outside: weather.outside, level: level)
    }
}

extension Comfort {
    /// Only hot rooms raise an alert; the rest are dropped.
    @Service func alert() -> Alert? {
        level == "hot" ? Alert(room: room, message: "room \(room) is \(celsius) °C with \(outside) °C outside") : nil
    }
}

@main struct BuildingAlerts {
    static func main() async throws {
        let reading = Reading(room: "3.024", celsius: 25.0)
        if let alert = try reading.validate().assess(weather: weather(), threshold: 26.0).alert() {
            print(alert.message)
        }
    }
}
