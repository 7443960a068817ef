// fmt's implementation, compiled once, for the static builds.
//
// Debian ships libfmt only as a shared library, and fmt's header-only mode
// compiles the library's implementation into every file that includes
// <fmt/format.h>: about 5 s more per file at -O2 (measured: base/units.cc
// 1.9 s -> 7.5 s), minutes of every test-host build. Static builds compile it
// here instead, and every other file uses fmt as a library.
#include <fmt/format-inl.h>

#include <locale>

FMT_BEGIN_NAMESPACE
namespace detail {

// The templates fmt's headers declare and leave to the library to instantiate.
template auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template locale_ref::locale_ref(const std::locale& loc);
template auto locale_ref::get<std::locale>() const -> std::locale;
template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl<wchar_t>(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl(locale_ref) -> char;
template auto decimal_point_impl(locale_ref) -> wchar_t;
template void buffer<char>::append(const char* begin, const char* end);
template void vformat_to(buffer<char>& buf, string_view fmt, basic_format_args<buffer_context<char>> args,
                         locale_ref loc);

}  // namespace detail
FMT_END_NAMESPACE
