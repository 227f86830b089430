// English for user-visible text: a count with its noun in the right number ("1 server",
// "8 servers") and the indefinite article of a name ("an A100", "a V100"). Every message that
// counts things or names a GPU goes through these, so none says "1 servers" or "a A100".
#pragma once

#include <cctype>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace odyssey {

/// `noun` in the number `n` asks for: the singular for exactly 1, else `plural` (or the singular
/// with an "s" when `plural` is empty).
inline std::string noun_for(double n, std::string_view noun, std::string_view plural = {}) {
  if (n == 1) return std::string(noun);
  return plural.empty() ? std::string(noun) + "s" : std::string(plural);
}

/// The count, then its noun in the number it asks for: "1 server", "8 servers".
inline std::string counted(long n, std::string_view noun, std::string_view plural = {}) {
  return fmt::format("{} {}", n, noun_for(static_cast<double>(n), noun, plural));
}

/// "a" or "an" before `word`, by its first sound: a name that starts with a capital followed by a
/// digit or another capital is read letter by letter (A100, H100, MI300X, L40S: "an"; V100,
/// B200, GB200: "a"); any other word by its first letter (an optimizer, a server).
inline std::string_view indefinite_article(std::string_view word) {
  if (word.empty()) return "a";
  const char c = word.front();
  const bool spelled = word.size() > 1 && std::isupper(static_cast<unsigned char>(c)) != 0 &&
                       (std::isdigit(static_cast<unsigned char>(word[1])) != 0 ||
                        std::isupper(static_cast<unsigned char>(word[1])) != 0);
  // Letters whose English names start with a vowel sound: A E F H I L M N O R S X.
  constexpr std::string_view VOWEL_NAMED = "AEFHILMNORSX";
  if (spelled) return VOWEL_NAMED.find(c) != std::string_view::npos ? "an" : "a";
  constexpr std::string_view VOWELS = "aeiouAEIOU";
  return VOWELS.find(c) != std::string_view::npos ? "an" : "a";
}

/// `word` with its indefinite article: "an A100", "a V100".
inline std::string with_article(std::string_view word) {
  return fmt::format("{} {}", indefinite_article(word), word);
}

} // namespace odyssey
