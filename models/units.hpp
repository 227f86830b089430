// Strong unit types. Each dimension is its own type, and only the operations that make dimensional
// sense compile: Bytes / BytesPerSecond -> Seconds, Flops / FlopsPerSecond -> Seconds, and so on.
// Raw doubles leave these types only at the SimGrid seam (sim/) and in reports.
#pragma once

#include <compare>

namespace odyssey {

/// A value of one physical dimension, stored in SI base units (seconds, bytes, FLOP, ...).
template <class Tag> class Quantity {
public:
  constexpr Quantity() = default;
  constexpr explicit Quantity(double value) : value_(value) {}
  /// The value in SI base units of the dimension.
  [[nodiscard]] constexpr double value() const { return value_; }

  constexpr Quantity operator+(Quantity o) const { return Quantity(value_ + o.value_); }
  constexpr Quantity operator-(Quantity o) const { return Quantity(value_ - o.value_); }
  constexpr Quantity& operator+=(Quantity o) {
    value_ += o.value_;
    return *this;
  }
  constexpr Quantity& operator-=(Quantity o) {
    value_ -= o.value_;
    return *this;
  }
  constexpr Quantity operator*(double k) const { return Quantity(value_ * k); }
  constexpr Quantity operator/(double k) const { return Quantity(value_ / k); }
  constexpr Quantity& operator*=(double k) {
    value_ *= k;
    return *this;
  }
  /// The ratio of two values of the same dimension is a plain number.
  constexpr double operator/(Quantity o) const { return value_ / o.value_; }
  constexpr auto operator<=>(const Quantity&) const = default;

private:
  double value_ = 0.0;
};

template <class Tag> constexpr Quantity<Tag> operator*(double k, Quantity<Tag> q) {
  return q * k;
}

using Seconds = Quantity<struct SecondsTag>;
using Bytes = Quantity<struct BytesTag>;
using Flops = Quantity<struct FlopsTag>; ///< floating-point operations (a count of work)
using BytesPerSecond = Quantity<struct BytesPerSecondTag>;
using FlopsPerSecond = Quantity<struct FlopsPerSecondTag>;

constexpr Seconds operator/(Bytes b, BytesPerSecond r) {
  return Seconds(b.value() / r.value());
}
constexpr Seconds operator/(Flops f, FlopsPerSecond r) {
  return Seconds(f.value() / r.value());
}
constexpr Bytes operator*(BytesPerSecond r, Seconds t) {
  return Bytes(r.value() * t.value());
}
constexpr Bytes operator*(Seconds t, BytesPerSecond r) {
  return r * t;
}
constexpr Flops operator*(FlopsPerSecond r, Seconds t) {
  return Flops(r.value() * t.value());
}
constexpr Flops operator*(Seconds t, FlopsPerSecond r) {
  return r * t;
}
constexpr BytesPerSecond operator/(Bytes b, Seconds t) {
  return BytesPerSecond(b.value() / t.value());
}
constexpr FlopsPerSecond operator/(Flops f, Seconds t) {
  return FlopsPerSecond(f.value() / t.value());
}

namespace literals {
constexpr Seconds operator""_s(long double v) {
  return Seconds(static_cast<double>(v));
}
constexpr Seconds operator""_us(long double v) {
  return Seconds(static_cast<double>(v) * 1e-6);
}
constexpr Bytes operator""_B(unsigned long long v) {
  return Bytes(static_cast<double>(v));
}
constexpr Bytes operator""_GiB(unsigned long long v) {
  return Bytes(static_cast<double>(v) * 1073741824.0);
}
constexpr BytesPerSecond operator""_GBps(long double v) {
  return BytesPerSecond(static_cast<double>(v) * 1e9);
}
} // namespace literals

} // namespace odyssey
