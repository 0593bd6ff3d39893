// json_test.cpp: the strict JSON reader: grammar, escapes and UTF-8, limits, duplicate keys.
#include <catch2/catch.hpp>

#include <string>

#include "authserv/oauth/json.hpp"

using namespace authserv::oauth;
using Type = json::Value::Type;

namespace {
std::string err(std::string_view text) {
  auto r = json::parse(text);
  return r ? "ok" : r.error().detail;
}
std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }
}  // namespace

TEST_CASE("json: values of every type") {
  auto v = json::parse(R"( {"s":"x","n":-12,"f":1.5,"e":1e3,"t":true,"F":false,"z":null,"a":[1,"b",{}]} )");
  REQUIRE(v);
  REQUIRE(v->type == Type::Object);
  CHECK(v->find("s")->string == "x");
  CHECK(*v->find("n")->integer == -12);
  CHECK(v->find("f")->type == Type::Number);
  CHECK_FALSE(v->find("f")->integer);
  CHECK_FALSE(v->find("e")->integer);
  CHECK(v->find("t")->boolean);
  CHECK(v->find("F")->type == Type::Bool);
  CHECK_FALSE(v->find("F")->boolean);
  CHECK(v->find("z")->type == Type::Null);
  CHECK(v->find("a")->array.size() == 3);
  CHECK(v->find("missing") == nullptr);
  CHECK(json::parse("[]")->find("x") == nullptr);
}

TEST_CASE("json: integers at the int64 edges") {
  CHECK(*json::parse("9223372036854775807")->integer == INT64_MAX);
  CHECK(*json::parse("-9223372036854775808")->integer == INT64_MIN);
  auto big = json::parse("9223372036854775808");  // valid JSON, just not an int64
  REQUIRE(big);
  CHECK_FALSE(big->integer);
  CHECK(*json::parse("-0")->integer == 0);
  for (auto bad : {"01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity", "1.5.5"})
    CHECK(err(bad) != "ok");
}

TEST_CASE("json: escapes, surrogate pairs and UTF-8") {
  auto v = json::parse(R"("a\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00")");
  REQUIRE(v);
  CHECK(v->string == "a\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  CHECK(json::parse(R"("\u0000")")->string == std::string(1, '\0'));
  CHECK(json::parse("\"\xC3\xA9\xF0\x9F\x98\x80\"")->string == "\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(err(R"("\x41")") == "escape");
  CHECK(err(R"("\u12")") == "escape");
  CHECK(err(R"("\u12G4")") == "escape");
  CHECK(err(R"("\")") == "truncated");
  CHECK(err(R"("\ud83d")") == "surrogate");          // high half alone
  CHECK(err(R"("\ud83dx")") == "surrogate");
  CHECK(err(R"("\ude00\ud83d")") == "surrogate");    // halves reversed
  CHECK(err(R"("\ud83d\u0041")") == "surrogate");
  CHECK(err("\"a\nb\"") == "control_char");
  CHECK(err("\"\xC0\xAF\"") == "utf8");              // overlong '/'
  CHECK(err("\"\xED\xA0\x80\"") == "utf8");          // encoded surrogate
  CHECK(err("\"\xF4\x90\x80\x80\"") == "utf8");      // past U+10FFFF
  CHECK(err("\"\xE2\x82\"") == "utf8");              // cut short
  CHECK(err("\"\x80\"") == "utf8");
}

TEST_CASE("json: depth limit") {
  CHECK(err(nested(8)) == "ok");
  CHECK(err(nested(9)) == "depth");
  CHECK(err(nested(4000)) == "depth");  // no recursion past the limit, however deep the input
  CHECK(err(R"({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}})") == "ok");
  CHECK(err(R"({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}})") == "depth");
  json::Limits tight;
  tight.max_depth = 1;
  CHECK(json::parse("[[]]", tight).error().detail == "depth");
}

TEST_CASE("json: duplicate keys, including ones spelled with escapes") {
  CHECK(err(R"({"sub":"a","sub":"b"})") == "duplicate_key");
  CHECK(err(R"({"email":"a","e\u006dail":"b"})") == "duplicate_key");
  CHECK(err(R"({"a":{"x":1,"x":2}})") == "duplicate_key");
  CHECK(err(R"({"a":{"x":1},"b":{"x":2}})") == "ok");
}

TEST_CASE("json: structure and trailing text") {
  for (auto bad : {"", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "{a:1}", "{'a':1}",
                   "{\"a\":1}x", "{\"a\":1}{}", "{} []", "tru", "nul", "truex", "[\"a\"", "{\"a\":1", "\"abc",
                   "// c\n{}"})
    CHECK(err(bad) != "ok");
  CHECK(err(std::string_view("{}\0", 3)) == "trailing");
  CHECK(err("{} \t\r\n") == "ok");
  CHECK(err(" \n{ \"a\" : [ 1 , 2 ] } ") == "ok");
  CHECK(err(std::string(8193, ' ')) == "oversize");
}
