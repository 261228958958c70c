using System.Text.Json;

namespace Relay.Deploy.Tests;

/// <summary>The Terraform modules parse and agree with each other (there is no terraform binary here: CI validates).</summary>
public sealed class TerraformTests
{
    private static readonly string[] Modules = ["vpc", "eks", "redis", "msk", "lambda", "edge"];

    [Fact]
    public void EveryTfFile_Parses_AndTheTreeHasEveryModule()
    {
        var folders = Terraform.Files.Keys.Select(static f => Path.GetDirectoryName(f)!.Replace('\\', '/')).ToHashSet();
        Assert.All(Modules, m => Assert.Contains($"terraform/modules/{m}", folders));
        Assert.Contains("terraform/examples/aws", folders);
        Assert.True(Terraform.Files.Count >= 20, $"only {Terraform.Files.Count} .tf files parsed");
    }

    [Fact]
    public void Tree_HasNoUndeclaredVariable_UnknownModuleInput_OrUndocumentedVariable()
    {
        var problems = Terraform.Problems(Terraform.Files);
        Assert.True(problems.Count == 0, string.Join("\n", problems));

        // Not vacuous: there are variables, module calls and module outputs to check.
        Assert.True(Terraform.Blocks(Terraform.Files, "variable").Count() > 40);
        Assert.Equal(7, Terraform.Blocks(Terraform.Files, "module").Count());
    }

    /// <summary>Each kind of drift is reported: the checks are run on the real tree with one file changed.</summary>
    [Theory]
    [InlineData("terraform/modules/redis/main.tf", "num_node_groups            = var.shards", "num_node_groups            = var.shard_count", "var.shard_count is not declared")]
    [InlineData("terraform/examples/aws/main.tf", "  replicas_per_shard        = 1\n", "  replicas_per_shard        = 1\n  replicas                  = 2\n", "is given replicas, which terraform/modules/redis does not declare")]
    [InlineData("terraform/examples/aws/main.tf", "  zone_id     = var.zone_id\n", "", "is not given zone_id, which terraform/modules/edge requires")]
    [InlineData("terraform/examples/aws/outputs.tf", "module.msk.bootstrap_brokers\n", "module.msk.brokers\n", "module.msk.brokers is not an output")]
    [InlineData("terraform/modules/msk/variables.tf", "  description = \"MSK broker instance type.\"\n", "", "variable \"broker_instance_type\" has no description")]
    [InlineData("terraform/examples/aws/main.tf", "  image_uri     = \"${aws_ecr_repository", "  image_url     = \"${aws_ecr_repository", "is given image_url, which terraform/modules/lambda does not declare")]
    [InlineData("terraform/modules/lambda/main.tf", "var.create_repository ? \"${aws_ecr_repository.this[0].repository_url}:${coalesce(var.image_tag,", "var.create_repository ? \"${aws_ecr_repository.this[0].repository_url}:${coalesce(var.tag,", "var.tag is not declared in terraform/modules/lambda")]
    [InlineData("terraform/modules/lambda/variables.tf", "  validation {\n    condition     = contains([\"Zip\", \"Image\"], var.package_type)\n    error_message = \"package_type: Zip or Image.\"\n  }\n", "", "variable \"package_type\" has no validation")]
    [InlineData("terraform/examples/aws/outputs.tf", "module.archive[0].function_arn", "module.archive[0].arn", "module.archive.arn is not an output")]
    public void Checks_ReportAChangedFile(string file, string from, string to, string expected)
    {
        var text = File.ReadAllText(Repo.PathOf(file.Split('/')));
        Assert.Contains(from, text, StringComparison.Ordinal);
        var temp = Path.Combine(Path.GetTempPath(), $"relay-tf-{Guid.NewGuid():N}.tf");
        File.WriteAllText(temp, text.Replace(from, to, StringComparison.Ordinal));
        try
        {
            var changed = Terraform.Parse([temp]).Single().Value;
            var files = new Dictionary<string, JsonElement>(Terraform.Files) { [file] = changed };
            var problems = Terraform.Problems(files);
            Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(temp);
        }
    }

    [Fact]
    public void LambdaImages_AreImagesTheDockerfilesBuild_InRepositoriesTheRootMakes()
    {
        var root = Terraform.Files.Where(static f => f.Key.StartsWith("terraform/examples/aws/", StringComparison.Ordinal)).ToList();
        var images = root.Where(static f => f.Value.TryGetProperty("locals", out _))
            .SelectMany(static f => f.Value.GetProperty("locals").EnumerateArray())
            .Single(static l => l.TryGetProperty("images", out _))
            .GetProperty("images").EnumerateArray().Select(static i => i.GetString()!).ToHashSet();

        // Every image the root makes a repository for is built by a Dockerfile; the cluster's and the Lambda hosts' are all there.
        var built = Repo.Hosts.Where(static h => File.Exists(Repo.PathOf("services", h, "Dockerfile"))).Select(ImageNames.Of).ToHashSet();
        Assert.All(images, i => Assert.True(built.Contains(i), $"terraform/examples/aws makes a repository for {i}, which no Dockerfile builds"));
        Assert.Superset(Repo.ClusterServices.Concat(Repo.LambdaHosts).Select(ImageNames.Of).ToHashSet(), images);

        // Each Lambda host runs as an image (package_type Image) from its own repository there.
        var functions = Terraform.Blocks(root, "module").Where(static m => m.Body.GetProperty("source").GetString() == "../../modules/lambda").ToList();
        foreach (var host in Repo.LambdaHosts)
        {
            var reference = $"aws_ecr_repository.images[\"{ImageNames.Of(host)}\"].repository_url";
            Assert.Contains(functions, f => f.Body.TryGetProperty("package_type", out var type) && type.GetString() == "Image" && f.Body.GetProperty("image_uri").GetString()!.Contains(reference, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void RelayEnvironmentVariables_OfTheTerraformFiles_NameRealSettings()
    {
        var names = Terraform.Files.SelectMany(static f => System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(Repo.PathOf(f.Key.Split('/'))), @"\bRelay__[A-Za-z0-9_]+").Select(m => (f.Key, Name: m.Value))).ToList();
        Assert.NotEmpty(names);
        var problems = names.Select(static n => (n.Key, Problem: RelaySettings.Problem(n.Name))).Where(static p => p.Problem is not null).Select(static p => $"{p.Key}: {p.Problem}").ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void Parser_RejectsBrokenHcl()
    {
        var temp = Path.Combine(Path.GetTempPath(), $"relay-tf-{Guid.NewGuid():N}.tf");
        File.WriteAllText(temp, "variable \"x\" {\n  type = string\n");
        try
        {
            var error = Assert.Throws<InvalidDataException>(() => Terraform.Parse([temp]));
            Assert.Contains("Unclosed configuration block", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    [Fact]
    public void Workflow_ValidatesAndLintsFoldersThatExist()
    {
        var workflow = File.ReadAllText(Repo.PathOf(".github", "workflows", "ci.yml"));
        var chdirs = System.Text.RegularExpressions.Regex.Matches(workflow, @"-chdir=(\S+)").Select(static m => m.Groups[1].Value).Distinct().ToList();
        Assert.NotEmpty(chdirs);
        Assert.All(chdirs, d => Assert.True(Terraform.Files.Keys.Any(f => f.StartsWith(d + "/", StringComparison.Ordinal)), $"the workflow runs terraform in {d}, which has no .tf files"));
        Assert.True(File.Exists(Repo.PathOf("terraform", ".tflint.hcl")));
        Assert.Contains("terraform/.tflint.hcl", workflow, StringComparison.Ordinal);
    }

    [Fact]
    public void ExampleRoot_OutputsThePublicEndpoints_TheJwksUrl_AndTheCollector()
    {
        var outputs = Terraform.Blocks(Terraform.Files.Where(static f => f.Key.StartsWith("terraform/examples/aws/", StringComparison.Ordinal)), "output").Select(static o => o.Label).ToHashSet();
        Assert.Superset(new HashSet<string> { "https_url", "wss_url", "jwks_url", "collector_endpoint" }, outputs);

        // The JWKS path is one the auth service maps, and the collector is the manifests' Service on its OTLP port.
        string Value(string name) => Terraform.Blocks(Terraform.Files, "output").Single(o => o.Label == name).Body.GetProperty("value").GetString()!;
        Assert.EndsWith("/.well-known/jwks.json", Value("jwks_url"), StringComparison.Ordinal);
        Assert.Contains("/.well-known/jwks.json", HostFacts.ProbePaths("Relay.Standalone"));
        var collector = new Uri(Value("collector_endpoint"));
        var service = Manifests.Base.OfKind("Service").Single(static s => s.Name() == "otel-collector");
        Assert.StartsWith("otel-collector.relay.", collector.Host, StringComparison.Ordinal);
        Assert.Contains(service.Items("spec", "ports"), p => p.Text("port") == collector.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>One resource's bodies, across the files of <paramref name="folder"/>.</summary>
    private static List<JsonElement> Resources(string folder, string type) =>
        Terraform.Files.Where(f => Path.GetDirectoryName(f.Key)!.Replace('\\', '/') == folder && f.Value.TryGetProperty("resource", out var r) && r.TryGetProperty(type, out _))
            .SelectMany(static f => f.Value.GetProperty("resource").EnumerateObject().SelectMany(static r => r.Value.EnumerateObject().Select(n => (Type: r.Name, Body: n.Value))))
            .Where(r => r.Type == type)
            .SelectMany(static r => r.Body.EnumerateArray())
            .ToList();

    private static string? Text(JsonElement body, string name) =>
        body.TryGetProperty(name, out var value) ? value.ValueKind switch { JsonValueKind.String => value.GetString(), JsonValueKind.True => "true", JsonValueKind.False => "false", _ => value.GetRawText() } : null;

    [Fact]
    public void Modules_MakeWhatTheDeploymentNeeds()
    {
        // Redis: ElastiCache in cluster mode (shards, the cluster-enabled parameter), TLS in transit, an AUTH token kept
        // in Secrets Manager.
        var redis = Assert.Single(Resources("terraform/modules/redis", "aws_elasticache_replication_group"));
        Assert.Equal("true", Text(redis, "transit_encryption_enabled"));
        Assert.Equal("true", Text(redis, "at_rest_encryption_enabled"));
        Assert.False(string.IsNullOrEmpty(Text(redis, "auth_token")), "the replication group has no auth_token");
        Assert.Equal("${var.shards}", Text(redis, "num_node_groups"));
        var parameters = Assert.Single(Resources("terraform/modules/redis", "aws_elasticache_parameter_group"));
        Assert.Contains(parameters.GetProperty("parameter").EnumerateArray(), static p => Text(p, "name") == "cluster-enabled" && Text(p, "value") == "yes");
        Assert.Contains(Resources("terraform/modules/redis", "aws_secretsmanager_secret_version"), static v => Text(v, "secret_string")!.Contains("random_password.auth.result", StringComparison.Ordinal));

        // EKS with Dapr (and the load balancer controller that makes the NLB) from Helm; MSK; a VPC with NAT.
        Assert.Single(Resources("terraform/modules/eks", "aws_eks_cluster"));
        var charts = Resources("terraform/modules/eks", "helm_release").Select(static h => Text(h, "chart")).ToHashSet();
        Assert.Superset(new HashSet<string?> { "dapr", "aws-load-balancer-controller" }, charts);
        Assert.Single(Resources("terraform/modules/msk", "aws_msk_cluster"));
        Assert.Single(Resources("terraform/modules/vpc", "aws_vpc"));
        Assert.NotEmpty(Resources("terraform/modules/vpc", "aws_nat_gateway"));

        // ACM, validated through Route 53, and the domain's record.
        var certificate = Assert.Single(Resources("terraform/modules/edge", "aws_acm_certificate"));
        Assert.Equal("DNS", Text(certificate, "validation_method"));
        Assert.Single(Resources("terraform/modules/edge", "aws_acm_certificate_validation"));
        Assert.Equal(2, Resources("terraform/modules/edge", "aws_route53_record").Count);

        // Lambda with a role of its own whose policy names no wildcard action or resource.
        Assert.Single(Resources("terraform/modules/lambda", "aws_lambda_function"));
        var policy = File.ReadAllText(Repo.PathOf("terraform", "modules", "lambda", "main.tf"));
        Assert.DoesNotMatch(@"(Action|Resource)\s*=\s*\[?\s*""\*""", policy);
        Assert.DoesNotMatch(@"Action\s*=\s*\[?[^\]\n]*""[a-z0-9-]+:\*""", policy);

        // The keys' secrets are made without values (put there by hand, never in the state): no version resource.
        var root = "terraform/examples/aws";
        Assert.Equal(2, Resources(root, "aws_secretsmanager_secret").Count);
        Assert.Empty(Resources(root, "aws_secretsmanager_secret_version"));
    }

    [Fact]
    public void RecordPointsAtTheNlb_TheIngressServiceNames()
    {
        // The edge module looks the NLB up by name; the AWS Load Balancer Controller names it after the Service's
        // annotation. With the root's default name, the two agree (docs/deploy.md says what to change with another).
        var root = Terraform.Files.Where(static f => f.Key.StartsWith("terraform/examples/aws/", StringComparison.Ordinal)).ToList();
        var edge = Terraform.Blocks(root, "module").Single(static m => m.Label == "edge").Body;
        var name = Terraform.Blocks(root, "variable").Single(static v => v.Label == "name").Body.GetProperty("default").GetString()!;
        var lookedUp = System.Text.RegularExpressions.Regex.Match(edge.GetProperty("nlb_name").GetString()!, @"\?\s*""([^""]*)""").Groups[1].Value.Replace("${var.name}", name, StringComparison.Ordinal);
        var nlb = Manifests.Base.OfKind("Service").Single(static s => s.Text("spec", "type") == "LoadBalancer");
        Assert.Equal(nlb.Text("metadata", "annotations", "service.beta.kubernetes.io/aws-load-balancer-name"), lookedUp);
        Assert.Contains("aws-load-balancer-name", File.ReadAllText(Repo.PathOf("docs", "deploy.md")), StringComparison.Ordinal);
    }
}
