//! `rules`: throughput of the reply engine's rule matching.
//!
//! Builds one bot with 10,000 rules (60% contains, 20% any_keyword, 10%
//! exact, 5% starts_with, 5% regex; ~2% with a CEL condition), generated
//! deterministically from word lists in this file, and 10,000 chat
//! messages of 3–30 words of which ~30% trigger some rule. Then it runs
//! `RuleSet::find` (with its dry-run trace) and `RuleSet::find_rule` (no
//! trace) over the messages on one thread for a fixed time each and prints
//! messages per second, mean and p99 time per message (p99 over batches of
//! 100 messages), and how long compiling the rule set took.
//!
//! `cargo run --release -p integro-bench --bin rules -- --seconds 5`

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use integro_engine::rules::{Action, MatchKind, RuleSet, RuleSpec};
use integro_engine::template::Vars;

#[derive(Parser)]
#[command(name = "rules", about = "Rule matching throughput of integro-engine")]
struct Args {
    /// Seconds to measure each of find and find_rule.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rules in the bot.
    #[arg(long, default_value_t = 10_000)]
    rules: usize,
    /// Distinct messages, replayed in a loop.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
}

/// Small deterministic generator (an LCG), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Everyday chat words (English, Portuguese, Spanish): the filler of
/// messages. Rules are built from topic words and product names instead,
/// so filler alone rarely triggers a rule.
const FILLER: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "please",
    "thanks",
    "thank",
    "you",
    "i",
    "want",
    "to",
    "know",
    "the",
    "a",
    "an",
    "about",
    "my",
    "is",
    "it",
    "can",
    "could",
    "help",
    "me",
    "with",
    "for",
    "and",
    "or",
    "but",
    "so",
    "what",
    "when",
    "where",
    "how",
    "why",
    "do",
    "does",
    "did",
    "have",
    "has",
    "we",
    "they",
    "this",
    "that",
    "there",
    "here",
    "now",
    "today",
    "tomorrow",
    "yesterday",
    "good",
    "morning",
    "afternoon",
    "evening",
    "ok",
    "okay",
    "yes",
    "no",
    "maybe",
    "sure",
    "oi",
    "olá",
    "bom",
    "dia",
    "boa",
    "tarde",
    "noite",
    "por",
    "favor",
    "obrigado",
    "obrigada",
    "eu",
    "quero",
    "saber",
    "sobre",
    "meu",
    "minha",
    "você",
    "pode",
    "ajudar",
    "com",
    "para",
    "que",
    "quando",
    "onde",
    "como",
    "então",
    "hoje",
    "amanhã",
    "ontem",
    "sim",
    "não",
    "talvez",
    "hola",
    "buenas",
    "gracias",
    "quiero",
    "saber",
    "sobre",
    "mi",
    "puedes",
    "ayudar",
    "con",
    "cuándo",
    "dónde",
    "cómo",
    "hoy",
    "mañana",
    "sí",
    "vale",
    "genial",
    "perfecto",
    "ótimo",
    "lol",
    "haha",
    "kkk",
    "jaja",
    "👍",
    "🙏",
    "😊",
    "pls",
    "u",
    "r",
    "ur",
    "thx",
    "tks",
    "vc",
];

/// Business topic words rules are written with.
const TOPICS: &[&str] = &[
    "price",
    "prices",
    "preço",
    "precio",
    "cost",
    "menu",
    "cardápio",
    "carta",
    "delivery",
    "entrega",
    "envío",
    "shipping",
    "order",
    "pedido",
    "orden",
    "refund",
    "reembolso",
    "devolução",
    "devolución",
    "warranty",
    "garantia",
    "garantía",
    "hours",
    "horário",
    "horario",
    "open",
    "aberto",
    "abierto",
    "closed",
    "fechado",
    "cerrado",
    "address",
    "endereço",
    "dirección",
    "location",
    "localização",
    "payment",
    "pagamento",
    "pago",
    "pix",
    "card",
    "cartão",
    "tarjeta",
    "cash",
    "dinheiro",
    "efectivo",
    "discount",
    "desconto",
    "descuento",
    "coupon",
    "cupom",
    "cupón",
    "promo",
    "promoção",
    "promoción",
    "size",
    "tamanho",
    "talla",
    "color",
    "cor",
    "stock",
    "estoque",
    "disponible",
    "disponível",
    "booking",
    "reserva",
    "appointment",
    "agendamento",
    "cita",
    "cancel",
    "cancelar",
    "change",
    "trocar",
    "cambiar",
    "invoice",
    "nota",
    "factura",
    "receipt",
    "recibo",
    "account",
    "conta",
    "cuenta",
    "password",
    "senha",
    "contraseña",
    "login",
    "app",
    "site",
    "website",
    "tracking",
    "rastreio",
    "seguimiento",
    "status",
    "situação",
    "estado",
    "pizza",
    "burger",
    "hambúrguer",
    "sushi",
    "salad",
    "salada",
    "ensalada",
    "coffee",
    "café",
    "cake",
    "bolo",
    "pastel",
    "juice",
    "suco",
    "jugo",
    "beer",
    "cerveja",
    "cerveza",
    "wine",
    "vinho",
    "vino",
    "vegan",
    "vegano",
    "gluten",
    "glúten",
    "lactose",
    "kids",
    "infantil",
    "family",
    "família",
    "familia",
    "large",
    "grande",
    "small",
    "pequeno",
    "pequeño",
    "medium",
    "médio",
    "mediano",
    "combo",
    "meal",
    "refeição",
    "comida",
    "lunch",
    "almoço",
    "almuerzo",
    "dinner",
    "jantar",
    "cena",
    "breakfast",
    "café-da-manhã",
    "desayuno",
    "table",
    "mesa",
    "parking",
    "estacionamento",
    "estacionamiento",
    "wifi",
    "pet",
    "dog",
    "cachorro",
    "perro",
    "gift",
    "presente",
    "regalo",
    "voucher",
    "vale-presente",
    "membership",
    "plano",
    "plan",
    "subscription",
    "assinatura",
    "suscripción",
    "upgrade",
    "downgrade",
    "trial",
    "teste",
    "prueba",
    "support",
    "suporte",
    "soporte",
    "agent",
    "atendente",
    "humano",
    "human",
    "manager",
    "gerente",
    "complaint",
    "reclamação",
    "reclamo",
    "feedback",
    "review",
    "avaliação",
    "reseña",
    "job",
    "vaga",
    "empleo",
    "partner",
    "parceria",
    "socio",
];

/// Syllables for made-up product and brand names ("zanflex", "korimo").
const SYLLABLES: &[&str] = &[
    "ka", "ro", "ni", "zan", "flex", "mo", "ti", "lu", "ve", "dor", "pra", "xi", "bel", "qua",
    "sol", "mar", "tek", "vi", "na", "gor", "pel", "ju", "ria", "fon", "ex", "tra", "li", "go",
];

fn product(rng: &mut Rng) -> String {
    let n = 2 + rng.below(2);
    (0..n).map(|_| rng.pick(SYLLABLES)).collect()
}

fn phrase(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|i| {
            if i == 0 || rng.chance(50) {
                rng.pick(TOPICS).to_string()
            } else {
                product(rng)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule and a text that triggers it (for building hitting messages).
struct Generated {
    spec: RuleSpec,
    trigger: String,
}

fn generate_rule(rng: &mut Rng, n: usize) -> Generated {
    let roll = rng.below(100);
    let mut spec = RuleSpec {
        id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n as u128),
        priority: rng.below(10) as i64,
        match_kind: MatchKind::Contains,
        pattern: None,
        keywords: vec![],
        condition: None,
        reply: Some(format!("Hi {{{{contact.name}}}}! Answer #{n}.")),
        media_url: None,
        action: None,
        active: true,
    };
    let trigger;
    match roll {
        0..60 => {
            // contains: a topic word with a product name, 2-3 words
            let words = 2 + rng.below(2);
            let p = phrase(rng, words);
            trigger = p.clone();
            spec.pattern = Some(p);
        }
        60..80 => {
            spec.match_kind = MatchKind::AnyKeyword;
            let count = 3 + rng.below(3);
            spec.keywords = (0..count)
                .map(|_| {
                    if rng.chance(50) {
                        product(rng)
                    } else {
                        phrase(rng, 2)
                    }
                })
                .collect();
            trigger = spec.keywords[rng.below(count)].clone();
        }
        80..90 => {
            spec.match_kind = MatchKind::Exact;
            let words = 1 + rng.below(3);
            let p = phrase(rng, words);
            trigger = format!("{p}?");
            spec.pattern = Some(p);
        }
        90..95 => {
            spec.match_kind = MatchKind::StartsWith;
            let p = phrase(rng, 2);
            trigger = p.clone();
            spec.pattern = Some(p);
        }
        _ => {
            spec.match_kind = MatchKind::Regex;
            let word = product(rng);
            let digits = 2 + rng.below(3);
            let (pattern, example) = match rng.below(4) {
                0 => (
                    format!(r"(?i)\b{word}\s*#?\d{{{digits}}}\b"),
                    format!("{word} #{}", "7".repeat(digits)),
                ),
                1 => (
                    format!(r"(?i)(cupom|coupon|cupón)\s+{word}\d{{{digits}}}"),
                    format!("cupom {word}{}", "3".repeat(digits)),
                ),
                2 => (format!(r"^(?i:{word})[- ]?\d+$"), format!("{word}-42")),
                _ => (
                    format!(r"\b{word}@[a-z]+\.(com|br|es)\b"),
                    format!("{word}@mail.com"),
                ),
            };
            trigger = example;
            spec.pattern = Some(pattern);
        }
    }
    match rng.below(10) {
        0 => spec.action = Some(Action::Handoff),
        1 => {
            spec.action = Some(Action::AskLlm {
                instructions: "Mention today's offer.".into(),
            })
        }
        _ => {}
    }
    if rng.chance(2) {
        spec.condition = Some(
            match rng.below(3) {
                0 => r#"channel == "whatsapp""#,
                1 => "now.hour >= 9 && now.hour < 18",
                _ => r#"contact.name.startsWith("A")"#,
            }
            .to_string(),
        );
    }
    Generated { spec, trigger }
}

fn generate_message(rng: &mut Rng, rules: &[Generated]) -> String {
    let words = 3 + rng.below(28);
    let mut parts: Vec<String> = (0..words).map(|_| rng.pick(FILLER).to_string()).collect();
    // Topic words without a product: near misses for the automaton.
    if rng.chance(40) {
        let at = rng.below(parts.len() + 1);
        parts.insert(at, rng.pick(TOPICS).to_string());
    }
    if rng.chance(30) {
        let rule = &rules[rng.below(rules.len())];
        match rule.spec.match_kind {
            MatchKind::Exact => return rule.trigger.clone(),
            MatchKind::StartsWith => parts.insert(0, rule.trigger.clone()),
            MatchKind::Regex if rule.trigger.contains('-') => return rule.trigger.clone(),
            _ => {
                let at = rng.below(parts.len() + 1);
                parts.insert(at, rule.trigger.clone());
            }
        }
    }
    let mut text = parts.join(" ");
    if rng.chance(50) {
        text.push_str(rng.pick(&["?", "!", ".", "??", " 🙏"]));
    }
    if rng.chance(20) {
        // Capitalised, as phones do.
        let mut chars = text.chars();
        if let Some(first) = chars.next() {
            text = first.to_uppercase().chain(chars).collect();
        }
    }
    text
}

struct Measured {
    messages: u64,
    hits: u64,
    elapsed: Duration,
    batch_per_message_ns: Vec<f64>,
}

fn measure(seconds: f64, messages: &[String], mut find: impl FnMut(&str) -> bool) -> Measured {
    const BATCH: usize = 100;
    let budget = Duration::from_secs_f64(seconds.max(0.1));
    // Warm-up: one pass.
    for m in messages {
        black_box(find(black_box(m)));
    }
    let start = Instant::now();
    let mut result = Measured {
        messages: 0,
        hits: 0,
        elapsed: Duration::ZERO,
        batch_per_message_ns: Vec::new(),
    };
    'outer: loop {
        for batch in messages.chunks(BATCH) {
            let t = Instant::now();
            for m in batch {
                result.hits += u64::from(black_box(find(black_box(m))));
            }
            let dt = t.elapsed();
            result.messages += batch.len() as u64;
            result
                .batch_per_message_ns
                .push(dt.as_nanos() as f64 / batch.len() as f64);
            if start.elapsed() >= budget {
                break 'outer;
            }
        }
    }
    result.elapsed = start.elapsed();
    result
}

fn report(name: &str, m: &mut Measured) {
    m.batch_per_message_ns.sort_by(f64::total_cmp);
    let p = |q: f64| {
        let v = &m.batch_per_message_ns;
        v[((v.len() as f64 - 1.0) * q).round() as usize]
    };
    let per_second = m.messages as f64 / m.elapsed.as_secs_f64();
    let mean_us = m.elapsed.as_secs_f64() * 1e6 / m.messages as f64;
    println!(
        "{name:<10} {per_second:>12.0} msg/s   mean {mean_us:>6.2} µs   p50 {:>6.2} µs   p99 {:>6.2} µs   ({} messages in {:.1} s, {:.1}% matched)",
        p(0.50) / 1000.0,
        p(0.99) / 1000.0,
        m.messages,
        m.elapsed.as_secs_f64(),
        100.0 * m.hits as f64 / m.messages as f64,
    );
}

fn main() {
    let args = Args::parse();
    let mut rng = Rng(0x5eed);
    let generated: Vec<Generated> = (0..args.rules)
        .map(|n| generate_rule(&mut rng, n))
        .collect();
    let messages: Vec<String> = (0..args.messages)
        .map(|_| generate_message(&mut rng, &generated))
        .collect();
    let specs: Vec<RuleSpec> = generated.iter().map(|g| g.spec.clone()).collect();

    let mut counts = [0usize; 5];
    for s in &specs {
        counts[s.match_kind as usize] += 1;
    }
    let conditions = specs.iter().filter(|s| s.condition.is_some()).count();

    let t = Instant::now();
    let set = match RuleSet::compile(specs) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("rules do not compile: {e}");
            std::process::exit(1);
        }
    };
    let compile = t.elapsed();

    let mut vars = Vars::new();
    vars.set("channel", "whatsapp");
    vars.set("contact.name", "Ana");
    vars.set("now.hour", 14);
    vars.set("now.weekday", 3);

    println!(
        "{} rules ({} contains, {} exact, {} starts_with, {} any_keyword, {} regex; {} with a condition), {} distinct messages",
        set.len(),
        counts[MatchKind::Contains as usize],
        counts[MatchKind::Exact as usize],
        counts[MatchKind::StartsWith as usize],
        counts[MatchKind::AnyKeyword as usize],
        counts[MatchKind::Regex as usize],
        conditions,
        messages.len(),
    );
    println!("compile    {:.1} ms", compile.as_secs_f64() * 1e3);

    let mut with_trace = measure(args.seconds, &messages, |m| {
        set.find(m, &vars).rule.is_some()
    });
    report("find", &mut with_trace);
    let mut fast = measure(args.seconds, &messages, |m| {
        set.find_rule(m, &vars).is_some()
    });
    report("find_rule", &mut fast);
}
